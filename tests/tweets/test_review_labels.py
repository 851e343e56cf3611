import json

import pytest

from model_runner.tweets.label_files import read_label_file
from model_runner.tweets.predictions import TweetPrediction, upsert_predictions
from model_runner.tweets.review import InvalidLabels, LabelItem, import_labels, list_review
from model_runner.tweets.tweets import Tweet, upsert_tweets
from tests.tweets.conftest import scores_for

LABELS = ("negative", "neutral", "positive")


def _queue(db, texts: dict[int, str]) -> None:
    upsert_tweets(db, [Tweet(i, t, "q") for i, t in texts.items()])
    preds = [TweetPrediction(i, "neutral", scores_for("neutral", 0.4)) for i in texts]
    upsert_predictions(db, "sentiment", "1", preds, review_threshold=0.6)


def _feedback(db) -> list[tuple[str, str]]:
    with db.connect() as conn:
        return conn.execute(
            "SELECT text, label FROM labelled_examples WHERE source = 'feedback' AND split = 'train'"
            " ORDER BY id"
        ).fetchall()


def test_labels_become_feedback_once_and_leave_the_review_queue(db):
    _queue(db, {1: "is the store open @acme", 2: "new update today", 3: "hmm"})
    items = [
        LabelItem("neutral", tweet_id=1),
        LabelItem("positive", text="new  update today"),  # same text as tweet 2 once normalised
        LabelItem("negative", text="never queued but useful"),
        LabelItem("neutral", tweet_id=404),
    ]
    first = import_labels(db, "sentiment", items, allowed_labels=LABELS)
    again = import_labels(db, "sentiment", items, allowed_labels=LABELS)

    assert (first.added, first.duplicates, first.removed_from_review) == (3, 0, 2)
    assert first.unknown_tweets == [404]
    assert (again.added, again.duplicates, again.removed_from_review) == (0, 3, 0)
    assert _feedback(db) == [
        ("is the store open @user", "neutral"),
        ("new update today", "positive"),
        ("never queued but useful", "negative"),
    ]
    total, remaining = list_review(db, "sentiment")
    assert total == 1 and remaining[0].tweet_id == 3


def test_a_bad_label_rejects_the_whole_batch(db):
    items = [LabelItem("positive", text="fine"), LabelItem("ecstatic", text="x"), LabelItem("neutral")]
    with pytest.raises(InvalidLabels) as info:
        import_labels(db, "sentiment", items, allowed_labels=LABELS)
    assert len(info.value.problems) == 2
    assert "row 2" in info.value.problems[0] and "row 3" in info.value.problems[1]
    assert _feedback(db) == []


def test_label_files_read_jsonl_and_csv_with_integer_labels_through_a_map(tmp_path):
    jsonl = tmp_path / "labels.jsonl"
    jsonl.write_text(
        json.dumps({"text": "love it", "label": "positive"})
        + "\n\n"
        + json.dumps({"tweet_id": "123", "label": 0})
        + "\n"
    )
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text("text,tweet_id,label\nmeh,,1\n,55,negative\n")

    label_map = {"0": "negative", "1": "neutral", "2": "positive"}
    assert read_label_file(jsonl, label_map) == [
        LabelItem("positive", text="love it"),
        LabelItem("negative", tweet_id=123),
    ]
    assert read_label_file(csv_file, label_map) == [
        LabelItem("neutral", text="meh"),
        LabelItem("negative", tweet_id=55),
    ]
    # without a map an integer stays what it is (and import_labels refuses it as no declared class)
    assert read_label_file(csv_file, {})[0] == LabelItem("1", text="meh")


@pytest.mark.parametrize(
    "line, problem",
    [
        ('{"text": "no label"}', "needs a 'label'"),
        ('{"tweet_id": "abc", "label": "neutral"}', "not an integer"),
        ('{"text": 5, "label": "neutral"}', "must be a string"),
        ("{broken", "not JSON"),
        ("[1, 2]", "needs a 'label'"),
    ],
)
def test_malformed_label_rows_are_named(tmp_path, line, problem):
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(InvalidLabels, match=problem):
        read_label_file(path, {})
