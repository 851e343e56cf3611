"""A small learnable dataset and settings that point everything at temp stores and a tiny BERT."""

from __future__ import annotations

import json
import random

import pytest

from model_runner.settings import Settings
from model_runner.wiring import Components

WORDS = {
    "negative": ["hate", "awful", "terrible", "worst", "angry", "broken"],
    "neutral": ["tuesday", "meeting", "schedule", "report", "station", "update"],
    "positive": ["love", "great", "amazing", "best", "happy", "wonderful"],
}
NOUNS = ["phone", "train", "coffee", "game", "movie", "app", "service", "weather", "team", "show"]


def make_rows(n_per_class: int, seed: int, shuffle_labels: bool = False) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for label, words in WORDS.items():
        for i in range(n_per_class):
            text = f"{rng.choice(words)} {rng.choice(NOUNS)} {rng.choice(words)} number {seed}-{i} @user"
            rows.append({"text": text, "label": label})
    if shuffle_labels:
        labels = [r["label"] for r in rows]
        rng.shuffle(labels)
        rows = [{"text": r["text"], "label": lab} for r, lab in zip(rows, labels, strict=True)]
    rng.shuffle(rows)
    return rows


def write_jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


EMOTION_WORDS = {"anger": "furious", "joy": "delighted", "optimism": "hopeful", "sadness": "heartbroken"}


def write_emotion_data(folder, n_train: int, n_eval: int):
    """A learnable four-class emotion dataset (train + validation) in ``folder``."""
    rng = random.Random(0)

    def rows(n, tag):
        return [
            {"text": f"{w} about the {rng.choice(['game', 'news', 'exam'])} {tag}{i}", "label": label}
            for label, w in EMOTION_WORDS.items()
            for i in range(n)
        ]

    folder.mkdir()
    write_jsonl(folder / "train.jsonl", rows(n_train, "t"))
    write_jsonl(folder / "validation.jsonl", rows(n_eval, "v"))
    return folder


@pytest.fixture
def dataset(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", make_rows(40, seed=1))
    write_jsonl(folder / "validation.jsonl", make_rows(15, seed=2))
    return folder


@pytest.fixture
def settings(tmp_path, database_url, tiny_bert) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database_url=database_url,
        encoder_id=str(tiny_bert),
        encoder_max_length=32,
        cv_folds=2,
        cv_workers=1,
        bootstrap_samples=200,
        adapters="linear,mlp",
        device="cpu",
    )


@pytest.fixture
def components(settings) -> Components:
    return Components(settings)
