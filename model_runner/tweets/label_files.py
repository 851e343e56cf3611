"""Reading a file of labels for ``model-runner label import``: JSON Lines or CSV.

Each row has ``label`` and either ``text`` or ``tweet_id`` (a tweet the inspector stored). Integer
labels read through the task's published order (0/1/2 = negative/neutral/positive for sentiment).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from model_runner.tweets.review import InvalidLabels, LabelItem


def _label(value, int_labels: Sequence[str]) -> str:
    text = str(value).strip()
    if text.lstrip("-").isdigit() and 0 <= int(text) < len(int_labels):
        return int_labels[int(text)]
    return text


def _item(row: dict, int_labels: Sequence[str], where: str) -> LabelItem:
    if not isinstance(row, dict) or row.get("label") in (None, ""):
        raise InvalidLabels([f"{where}: needs a 'label'"])
    tweet_id = row.get("tweet_id")
    if tweet_id not in (None, ""):
        try:
            tweet_id = int(tweet_id)
        except (TypeError, ValueError):
            raise InvalidLabels([f"{where}: tweet_id {tweet_id!r} is not an integer"]) from None
    else:
        tweet_id = None
    text = row.get("text")
    if text is not None and not isinstance(text, str):
        raise InvalidLabels([f"{where}: text must be a string"])
    return LabelItem(label=_label(row["label"], int_labels), text=text or None, tweet_id=tweet_id)


def read_label_file(path: Path, int_labels: Sequence[str]) -> list[LabelItem]:
    if not path.is_file():
        raise FileNotFoundError(f"no such label file: {path}")
    items: list[LabelItem] = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            for i, row in enumerate(csv.DictReader(handle), start=2):
                items.append(_item(row, int_labels, f"{path.name}:{i}"))
        return items
    with path.open(encoding="utf-8") as handle:
        for i, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidLabels([f"{path.name}:{i}: not JSON ({exc.msg})"]) from None
            items.append(_item(row, int_labels, f"{path.name}:{i}"))
    return items
