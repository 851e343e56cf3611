"""Helpers that write small data files into a test's tmp_path."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest


def _write_jsonl(path: Path, rows: Iterable[dict | str]) -> Path:
    """Write dicts as JSON lines; plain strings are written verbatim (to make broken lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


def _write_csv(path: Path, rows: Iterable[list[str]], header: tuple[str, ...] = ("text", "label")) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def write_jsonl() -> Callable[..., Path]:
    return _write_jsonl


@pytest.fixture
def write_csv() -> Callable[..., Path]:
    return _write_csv


def balanced_rows(labels: list[str], per_class: int, prefix: str = "tweet") -> list[dict]:
    """Distinct texts, ``per_class`` of each label, interleaved."""
    return [
        {"text": f"{prefix} {label} number {i}", "label": label} for i in range(per_class) for label in labels
    ]


@pytest.fixture
def make_rows() -> Callable[..., list[dict]]:
    return balanced_rows
