"""Reading a file of labels for ``model-runner label import``: JSON Lines or CSV.

Each row has ``label`` and either ``text`` or ``tweet_id`` (a tweet the inspector stored). Labels read
through the task's ``label_map`` (``0`` -> ``negative``) when it names them; integers are never named
by their position.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path

from model_runner.tweets.review import InvalidLabels, LabelItem


def _label(value, label_map: Mapping[str, str]) -> str:
    text = str(value).strip()
    return label_map.get(text.lower(), text)


def _item(row: dict, label_map: Mapping[str, str], where: str) -> LabelItem:
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
    return LabelItem(label=_label(row["label"], label_map), text=text or None, tweet_id=tweet_id)


def read_label_file(path: Path, label_map: Mapping[str, str]) -> list[LabelItem]:
    if not path.is_file():
        raise FileNotFoundError(f"no such label file: {path}")
    items: list[LabelItem] = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            for i, row in enumerate(csv.DictReader(handle), start=2):
                items.append(_item(row, label_map, f"{path.name}:{i}"))
        return items
    with path.open(encoding="utf-8") as handle:
        for i, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidLabels([f"{path.name}:{i}: not JSON ({exc.msg})"]) from None
            items.append(_item(row, label_map, f"{path.name}:{i}"))
    return items
