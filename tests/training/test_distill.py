"""The teacher stage and the distilled student, end to end on the tiny encoder (teacher and student).

The real teacher (all-mpnet-base-v2, 110M parameters) is too slow for these tests; any local folder
works as ``teacher_id`` and goes through the same code: fit, Postgres logits cache, distillation.
"""

import json

import mlflow
import numpy as np
import pytest

from model_runner.jobs.champion import load_champion
from model_runner.tasks import get_task
from model_runner.teacher import stage as stage_module
from model_runner.training.run import run_training
from model_runner.wiring import Components

from .conftest import make_rows, write_jsonl


@pytest.fixture
def taught(settings, tiny_bert):
    """Settings whose runs distil from a teacher fine-tuned from the tiny BERT."""
    return settings.model_copy(
        update={"teacher": "auto", "teacher_id": str(tiny_bert), "adapters": "distill"}
    )


@pytest.fixture
def teacher_calls(monkeypatch):
    """The size of every batch of texts the teacher is run on."""
    calls: list[int] = []
    real = stage_module.teacher_logits

    def counting(model, texts, **kwargs):
        calls.append(len(texts))
        return real(model, texts, **kwargs)

    monkeypatch.setattr(stage_module, "teacher_logits", counting)
    return calls


def test_a_distilled_student_trains_records_its_teacher_and_serves(taught, dataset, teacher_calls):
    outcome = run_training(Components(taught), get_task("sentiment", taught), data=str(dataset))
    assert outcome.best_candidate.startswith("distill[")
    assert outcome.teacher["fitted"] and outcome.teacher["computed"] == 0
    assert outcome.teacher["base_id"] == taught.teacher_id
    assert "teacher" in outcome.stage_seconds

    run = mlflow.MlflowClient(taught.tracking_uri()).get_run(outcome.run_id)
    assert run.data.params["teacher.key"] == outcome.teacher["key"]
    assert run.data.params["teacher.fitted"] == "True"
    served = load_champion(taught, "sentiment")
    assert served.model.meta["distill"]["labelled_rows"] == outcome.data["rows_out"]["train"]
    proba = served.model.predict_proba(["love this great phone", "the meeting is on tuesday"])
    assert proba.shape == (2, 3) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)


def test_a_second_run_runs_the_teacher_only_on_new_texts(taught, dataset, teacher_calls):
    components = Components(taught)
    task = get_task("sentiment", taught)
    first = run_training(components, task, data=str(dataset))
    rows = first.data["rows_out"]["train"]
    assert first.teacher["fitted"] and teacher_calls == [rows]  # its own rows, once, after its fit

    again = run_training(components, task, data=str(dataset))
    assert not again.teacher["fitted"] and again.teacher["key"] == first.teacher["key"]
    assert again.teacher["computed"] == 0 and teacher_calls == [rows]

    # a weekly retrain with a few new labelled rows: the teacher runs on those only
    new_rows = make_rows(4, seed=77)
    grown = run_training(components, task, data=str(dataset), extra_rows=new_rows)
    assert not grown.teacher["fitted"]
    assert grown.teacher["computed"] == len(new_rows) and teacher_calls == [rows, len(new_rows)]


def test_much_new_data_or_refit_fits_a_new_teacher(taught, dataset, tmp_path):
    components = Components(taught)
    task = get_task("sentiment", taught)
    first = run_training(components, task, data=str(dataset))
    other = tmp_path / "other"
    other.mkdir()
    write_jsonl(other / "train.jsonl", make_rows(40, seed=5))
    write_jsonl(other / "validation.jsonl", make_rows(15, seed=2))
    changed = run_training(components, task, data=str(other))
    assert changed.teacher["fitted"] and "new to it" in changed.teacher["reason"]
    assert changed.teacher["key"] != first.teacher["key"]

    refit = taught.model_copy(update={"teacher": "refit"})
    forced = run_training(Components(refit), task, data=str(other))
    assert forced.teacher["fitted"] and forced.teacher["reason"] == "teacher=refit"


def test_the_student_also_learns_from_stored_unlabelled_tweets(taught, dataset, teacher_calls):
    components = Components(taught)
    texts = [f"wonderful coffee number u{i} @user" for i in range(6)]
    with components.db.connect() as conn:
        for i, text in enumerate(texts):
            conn.execute(
                "INSERT INTO tweets (tweet_id, text, found_by) VALUES (%s, %s, 'replay')", (i + 1, text)
            )
    outcome = run_training(components, get_task("sentiment", taught), data=str(dataset))
    assert outcome.teacher["unlabelled_rows"] == len(texts)
    # fitted on the labelled rows and scored them; then the tweets, which are new to it
    assert teacher_calls == [outcome.data["rows_out"]["train"], len(texts)]
    served = load_champion(taught, "sentiment")
    assert served.model.meta["distill"]["unlabelled_rows"] == len(texts)


def test_without_a_teacher_the_student_is_the_plain_fine_tune(taught, dataset):
    off = taught.model_copy(update={"teacher": "off"})
    outcome = run_training(Components(off), get_task("sentiment", off), data=str(dataset))
    assert outcome.best_candidate.startswith("finetune[") and outcome.teacher is None
    run = mlflow.MlflowClient(off.tracking_uri()).get_run(outcome.run_id)
    assert run.data.tags["teacher.skipped"] == "teacher=off"

    missing = taught.model_copy(update={"teacher_id": "/nonexistent/teacher-folder"})
    outcome = run_training(Components(missing), get_task("sentiment", missing), data=str(dataset))
    assert outcome.best_candidate.startswith("finetune[")
    run = mlflow.MlflowClient(missing.tracking_uri()).get_run(outcome.run_id)
    assert "cannot load" in run.data.tags["teacher.skipped"]


def test_teacher_logits_are_cached_in_postgres_per_teacher(taught, dataset):
    components = Components(taught)
    outcome = run_training(components, get_task("sentiment", taught), data=str(dataset))
    with components.db.connect() as conn:
        rows = conn.execute(
            "SELECT count(*), bool_and(in_sample), min(array_length(logits, 1)) FROM teacher_logits"
            " WHERE teacher_key = %s",
            (outcome.teacher["key"],),
        ).fetchone()
        record = conn.execute("SELECT params FROM teachers WHERE teacher_key = %s", (outcome.teacher["key"],))
        params = record.fetchone()[0]
    assert rows == (outcome.data["rows_out"]["train"], True, 3)
    assert json.loads(json.dumps(params))["hp"]["lr"] == pytest.approx(4e-5)
