"""Tasks are data: a task declared only in a tasks file trains and serves, label maps and named
columns reach the training job, and integer labels without a map fail with the values named."""

from __future__ import annotations

import csv
import random
from pathlib import Path

from model_runner.settings import Settings
from tests.service.conftest import make_dataset, make_settings, new_database, serve, wait_for_job

TASKS_TOML = """
[sentiment]
data = "{sentiment}"
metric = "macro_recall"
labels = ["negative", "neutral", "positive"]

[emotion]
data = "{sentiment}"
metric = "macro_f1"

[stance]
data = "{stance}"
metric = "macro_f1"
label_map = {{ "0" = "against", "2" = "none", "4" = "favor" }}
text_column = "tweet"
label_column = "polarity"
schedule = "@monthly"
"""

WORDS = {
    0: ["against", "oppose", "terrible", "reject", "stop"],
    2: ["maybe", "perhaps", "report", "update", "today"],
    4: ["support", "favor", "great", "agree", "yes"],
}


def write_coded_csv(path: Path, codes: tuple[int, ...], n: int, *, seed: int = 3) -> Path:
    """Sentiment140-style rows: integer codes in a ``polarity`` column, the text in ``tweet``."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["polarity", "id", "tweet"])
        for i in range(n):
            code = codes[i % len(codes)]
            words = [rng.choice(WORDS[code]) for _ in range(4)]
            writer.writerow([code, i, f"{' '.join(words)} number {i}"])
    return path


def test_a_task_declared_only_in_the_tasks_file_trains_and_serves_and_label_maps_reach_the_job(
    tmp_path, pg_server, tiny_bert
):
    home = tmp_path / "home"
    stance = write_coded_csv(home / "data" / "stance.csv", (0, 2, 4), 60)
    sentiment = make_dataset(home / "data" / "sentiment")
    tasks_file = tmp_path / "tasks.toml"
    tasks_file.write_text(TASKS_TOML.format(sentiment=sentiment, stance=stance))
    settings: Settings = make_settings(
        home, new_database(pg_server), tiny_bert, tasks="", tasks_file=tasks_file, task_overrides={}
    )
    assert settings.task_list() == ["sentiment", "emotion", "stance"]

    with serve(settings, wait_ready=False) as server, server.client() as c:
        declared = c.get("/tasks").json()
        assert [t["name"] for t in declared["tasks"]] == ["sentiment", "emotion", "stance"]
        stance_view = declared["tasks"][2]
        assert stance_view["label_map"] == {"0": "against", "2": "none", "4": "favor"}
        assert (stance_view["text_column"], stance_view["schedule"], stance_view["served"]) == (
            "tweet",
            "@monthly",
            True,
        )

        r = c.post("/train", json={"task": "stance", "folds": 2}, headers=server.admin())
        assert r.status_code == 202, r.text
        job = wait_for_job(c, r.json()["job_id"])
        assert job["state"] == "succeeded", job
        assert job["task"] == "stance" and job["reload"]["reloaded"] is True

        r = c.post("/inference", json={"task": "stance", "messages": ["support favor agree yes"]})
        assert r.status_code == 200, r.text
        assert r.headers["X-Model-Version"] == "tweetpulse-stance/1"
        scores = r.json()["predictions"][0]["scores"]
        assert set(scores) == {"against", "none", "favor"}

        r = c.post("/train", json={"task": "sarcasm"}, headers=server.admin())
        assert r.status_code == 422 and r.json()["error"]["type"] == "unknown_task"
        assert "stance" in r.json()["error"]["message"]
        r = c.get("/review", params={"task": "sarcasm"})
        assert r.status_code == 422 and r.json()["error"]["type"] == "unknown_task"

        # the default task read with a label map and named columns, on the same service
        binary = write_coded_csv(home / "data" / "binary.csv", (0, 4), 60)
        admin = server.admin()
        # integer labels and no map: the job fails, naming the values it saw
        columns = {"text_column": "tweet", "label_column": "polarity"}
        r = c.post("/train", json={"dataset": str(binary), **columns}, headers=admin)
        assert r.status_code == 202, r.text
        job = wait_for_job(c, r.json()["job_id"])
        assert job["state"] == "failed"
        assert "integers (0, 4)" in job["error"] and "label map" in job["error"], job["error"]
        # a bad map is refused before any job exists
        r = c.post("/train", json={"dataset": str(binary), "label_map": {"0": ""}}, headers=admin)
        assert r.status_code == 422
        # Sentiment140's 0/4 with a map and named columns trains a two-class model
        body = {
            "dataset": str(binary),
            "label_map": {"0": "Negative", "4": "positive"},
            "folds": 2,
            **columns,
        }
        r = c.post("/train", json=body, headers=admin)
        assert r.status_code == 202, r.text
        job = wait_for_job(c, r.json()["job_id"])
        assert job["state"] == "succeeded", job
        assert job["params"]["label_map"] == {"0": "negative", "4": "positive"}
        assert job["params"]["text_column"] == "tweet"
        r = c.post("/inference", json={"messages": ["terrible reject stop"]})
        assert r.status_code == 200 and set(r.json()["predictions"][0]["scores"]) == {"negative", "positive"}
