import json

import pytest

from model_runner.cli import main
from model_runner.tweets.predictions import TweetPrediction, upsert_predictions
from model_runner.tweets.tweets import Tweet, upsert_tweets
from tests.tweets.conftest import scores_for


@pytest.fixture
def env(monkeypatch, database_url, tmp_path):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("TWEETPULSE_HOME", str(tmp_path / "home"))
    from model_runner.settings import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_export_the_queue_label_it_and_import_it_back(env, db, tmp_path, capsys):
    upsert_tweets(db, [Tweet(11, "is this good or bad", "q"), Tweet(12, "no idea", "q")])
    preds = [TweetPrediction(i, "neutral", scores_for("neutral", 0.4)) for i in (11, 12)]
    upsert_predictions(db, "sentiment", "1", preds, review_threshold=0.6)

    queue = tmp_path / "queue.jsonl"
    assert main(["label", "export", str(queue)]) == 0
    rows = [json.loads(line) for line in queue.read_text().splitlines()]
    assert [r["tweet_id"] for r in rows] == ["11", "12"] and rows[0]["label"] == ""

    rows[0]["label"] = "positive"
    rows[1]["label"] = 0  # integer labels read through a label map, never by position
    queue.write_text("".join(json.dumps(r) + "\n" for r in rows))
    capsys.readouterr()
    assert main(["label", "import", str(queue)]) == 2
    assert "'0' is not one of" in capsys.readouterr().err
    assert main(["label", "import", str(queue), "--label-map", "0=negative,1=positive"]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (first["added"], first["removed_from_review"]) == (2, 2)
    assert main(["label", "import", str(queue), "--label-map", "0=negative"]) == 0
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (second["added"], second["duplicates"]) == (0, 2)
    with db.connect() as conn:
        stored = conn.execute("SELECT label FROM labelled_examples WHERE source = 'feedback' ORDER BY id")
        assert [r[0] for r in stored] == ["positive", "negative"]


def test_import_reports_bad_files_clearly(env, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x", "label": "furious"}\n')
    assert main(["label", "import", str(bad)]) == 2
    assert "furious" in capsys.readouterr().err
    assert main(["label", "import", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err
