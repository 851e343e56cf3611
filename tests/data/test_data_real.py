"""The pipeline on the real shared datasets (skipped where ../shared/datasets is not mounted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_runner.data import prepare_dataset, read_source

SHARED = (Path(__file__).resolve().parents[2] / "../shared/datasets").resolve()


def _require(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"shared dataset {path} not available")
    return path


def test_tweet_sentiment_has_three_labels_and_validation_as_eval() -> None:
    path = _require("tweet-sentiment")
    splits, malformed = read_source(path)
    data = prepare_dataset(path)
    summary = data.summary
    assert data.labels == ["negative", "neutral", "positive"]
    assert summary.eval_source == "file:validation"
    assert len(splits["validation"]) == 2000
    # Eval has priority in deduplication, so it only loses rows that are unusable or self-conflicting.
    assert 1990 <= len(data.eval) <= 2000
    assert summary.rows_in == len(splits["train"]) + len(splits["validation"]) + sum(malformed.values())
    assert summary.rows_in == sum(summary.rows_out.values()) + sum(summary.dropped.values())
    assert not set(data.train["text"]) & set(data.eval["text"])
    assert all(count > 0 for count in summary.class_balance["train"].values())


def test_tweet_emotion_has_four_labels() -> None:
    path = _require("tweet-emotion")
    data = prepare_dataset(path)
    assert data.labels == ["anger", "joy", "optimism", "sadness"]
    assert data.train.features["label"].names == data.labels
    assert data.summary.eval_source == "file:validation"
    assert len(data.eval) > 350
    assert not set(data.train["text"]) & set(data.eval["text"])
