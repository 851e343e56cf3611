"""Read labelled tweets from files, directories or the Hugging Face Hub into raw rows.

Readers never judge content (that is the pipeline's job); they only turn each source into
``{"text": ..., "label": ...}`` dicts per split and count lines that cannot be parsed at all as
``broken_line``. JSON Lines and CSV are parsed line by line on purpose: one bad line in a scraped
file must cost one row, not the whole run. (A ``.json`` file holding a single JSON array is accepted
too; its non-object elements count as broken lines.) Blank lines are skipped without being counted.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from model_runner.data.labels import parse_mapping_file
from model_runner.errors import TweetpulseError

logger = logging.getLogger(__name__)

BROKEN_LINE = "broken_line"
RawRow = dict[str, Any]

_JSON_SUFFIXES = {".jsonl", ".json"}
_DATA_SUFFIXES = {*_JSON_SUFFIXES, ".csv", ".parquet"}
_SPLIT_ALIASES = {"val": "validation", "valid": "validation", "dev": "validation", "training": "train"}
# Hub-style shard names ("train-00000-of-00003") belong to the split before the shard number.
_SHARD_RE = re.compile(r"^(?P<split>.+?)-\d+-of-\d+$")
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(?::[\w.-]+)?$")


class DataError(TweetpulseError, ValueError):
    """The input cannot be turned into a dataset (missing, unsupported, empty or too small)."""

    status, type = 422, "invalid_data"


@dataclass(frozen=True)
class Columns:
    """Which fields of a source hold the text and the label (CSV headers match case-insensitively)."""

    text: str = "text"
    label: str = "label"


DEFAULT_COLUMNS = Columns()


@dataclass
class RawSource:
    splits: dict[str, list[RawRow]] = field(default_factory=dict)
    malformed: Counter[str] = field(default_factory=Counter)
    # Integer -> name map that ships with the data (TweetEval mapping.txt, Hub ClassLabel names).
    label_mapping: dict[str, str] = field(default_factory=dict)

    def add(self, split: str, rows: list[RawRow]) -> None:
        self.splits.setdefault(split, []).extend(rows)


def split_name(stem: str) -> str:
    stem = stem.strip().lower()
    match = _SHARD_RE.match(stem)
    if match:
        stem = match.group("split")
    return _SPLIT_ALIASES.get(stem, stem)


def read_source(
    source: str | os.PathLike[str], columns: Columns = DEFAULT_COLUMNS
) -> tuple[dict[str, list[RawRow]], Counter[str]]:
    """Split name -> raw rows, plus a counter of lines that could not be parsed."""
    raw = load_raw(source, columns)
    return raw.splits, raw.malformed


def load_raw(source: str | os.PathLike[str], columns: Columns = DEFAULT_COLUMNS) -> RawSource:
    path = Path(source).expanduser()
    text = os.fspath(source)
    if path.is_dir():
        raw = _read_directory(path, columns)
    elif path.is_file():
        raw = RawSource()
        # A lone file is all training data: its name says nothing reliable about its role.
        raw.add("train", _read_file(path, raw.malformed, columns))
    elif _HUB_ID_RE.match(text) and Path(text.split(":")[0]).suffix.lower() not in {*_DATA_SUFFIXES, ".txt"}:
        raw = _read_hub(text, columns)
    else:
        raise DataError(
            f"data source not found: {text!r} is neither an existing path nor a Hub id 'owner/name'"
        )
    _check_text_column(raw, columns, text)
    return raw


def _check_text_column(raw: RawSource, columns: Columns, where: str) -> None:
    """Rows exist but none has the text field: a wrong column name, said plainly instead of every row
    being dropped as missing_text."""
    rows = [row for split in raw.splits.values() for row in split]
    if rows and all(row.get("text") is None for row in rows):
        raise DataError(
            f"no row of {where!r} has a {columns.text!r} text field; name the text column with text_column"
        )


def _read_file(path: Path, malformed: Counter[str], columns: Columns = DEFAULT_COLUMNS) -> list[RawRow]:
    suffix = path.suffix.lower()
    if suffix in _JSON_SUFFIXES:
        return _read_jsonl(path, malformed, columns)
    if suffix == ".csv":
        return _read_csv(path, malformed, columns)
    if suffix == ".parquet":
        return _read_parquet(path, columns)
    raise DataError(
        f"unsupported data format {suffix or '(none)'!r} for {path}; use .jsonl, .json, .csv or .parquet"
    )


def _row(obj: dict[str, Any], columns: Columns) -> RawRow:
    return {"text": obj.get(columns.text), "label": obj.get(columns.label)}


def _read_json_array(path: Path, malformed: Counter[str], columns: Columns) -> list[RawRow] | None:
    """Rows of a ``.json`` file holding one JSON array, or None when it is JSON Lines after all."""
    with path.open("rb") as handle:
        head = handle.read(4096).lstrip().removeprefix(b"\xef\xbb\xbf").lstrip()
    if not head.startswith(b"["):
        return None
    try:
        items = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, ValueError):
        return None  # fall back to line-by-line parsing, which counts the damage
    if not isinstance(items, list):
        return None
    malformed[BROKEN_LINE] += sum(not isinstance(item, dict) for item in items)
    return [_row(item, columns) for item in items if isinstance(item, dict)]


def _read_jsonl(path: Path, malformed: Counter[str], columns: Columns) -> list[RawRow]:
    if path.suffix.lower() == ".json":
        array_rows = _read_json_array(path, malformed, columns)
        if array_rows is not None:
            return array_rows
    rows: list[RawRow] = []
    with path.open("rb") as handle:
        # Binary lines so that a stray U+2028 inside a tweet does not split a record.
        for number, line in enumerate(handle, start=1):
            try:
                decoded = line.decode("utf-8-sig" if number == 1 else "utf-8")
                if not decoded.strip():
                    continue
                obj = json.loads(decoded)
            except (UnicodeDecodeError, ValueError):
                obj = None
            if not isinstance(obj, dict):
                malformed[BROKEN_LINE] += 1
                logger.debug("%s:%d: not a JSON object, skipped", path, number)
                continue
            rows.append(_row(obj, columns))
    return rows


def _read_csv(path: Path, malformed: Counter[str], columns: Columns) -> list[RawRow]:
    rows: list[RawRow] = []
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        names = [c.strip().lower() for c in header or []]
        wanted = (columns.text.strip().lower(), columns.label.strip().lower())
        missing = [c for c in wanted if c not in names]
        if missing:
            raise DataError(
                f"CSV file {path} has no {' or '.join(repr(c) for c in missing)} column in its header"
                f" (columns: {', '.join(names)}); name them with text_column / label_column"
            )
        text_at, label_at = names.index(wanted[0]), names.index(wanted[1])
        while True:
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error:
                malformed[BROKEN_LINE] += 1
                continue
            if not record:
                continue  # blank line
            if len(record) != len(names):
                malformed[BROKEN_LINE] += 1
                continue
            rows.append({"text": record[text_at], "label": record[label_at]})
    return rows


def _read_parquet(path: Path, columns: Columns) -> list[RawRow]:
    try:
        # A throwaway cache: the rows are kept in memory, and a persistent cache keyed on the path
        # could serve stale rows after the file is rewritten in place.
        with tempfile.TemporaryDirectory(prefix="model-runner-parquet-") as cache_dir:
            table = datasets.Dataset.from_parquet(str(path), keep_in_memory=True, cache_dir=cache_dir)
    except Exception as exc:  # pyarrow raises a variety of errors for corrupt files
        raise DataError(f"cannot read parquet file {path}: {exc}") from exc
    return _rows_from_columns(table, str(path), columns)


def _rows_from_columns(table: Any, where: str, columns: Columns) -> list[RawRow]:
    if columns.text not in table.column_names:
        raise DataError(
            f"{where} has no {columns.text!r} column (columns: {table.column_names});"
            " name it with text_column"
        )
    texts = list(table[columns.text])
    labels = list(table[columns.label]) if columns.label in table.column_names else [None] * len(texts)
    return [{"text": t, "label": lab} for t, lab in zip(texts, labels, strict=True)]


def _read_tweeteval(directory: Path, raw: RawSource) -> None:
    def lines(path: Path) -> list[str]:
        # Split on "\n" only (not str.splitlines) so texts and labels stay aligned by line number.
        content = path.read_text(encoding="utf-8-sig", errors="replace")
        return [line.rstrip("\r") for line in content.removesuffix("\n").split("\n")] if content else []

    for text_file in sorted(directory.glob("*_text.txt")):
        stem = text_file.name.removesuffix("_text.txt")
        label_file = directory / f"{stem}_labels.txt"
        texts = lines(text_file)
        labels = lines(label_file) if label_file.is_file() else []
        if len(labels) != len(texts):
            logger.warning("%s has %d lines but %s has %d", text_file, len(texts), label_file, len(labels))
        count = max(len(texts), len(labels))
        padded_texts: list[str | None] = [*texts, *[None] * (count - len(texts))]
        padded_labels: list[str | None] = [*labels, *[None] * (count - len(labels))]
        raw.add(
            split_name(stem),
            [{"text": t, "label": lab} for t, lab in zip(padded_texts, padded_labels, strict=True)],
        )
    mapping_file = directory / "mapping.txt"
    if mapping_file.is_file():
        raw.label_mapping.update(parse_mapping_file(mapping_file))


def _read_directory(directory: Path, columns: Columns) -> RawSource:
    raw = RawSource()
    _read_tweeteval(directory, raw)
    data_files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in _DATA_SUFFIXES)
    for path in data_files:
        raw.add(split_name(path.stem), _read_file(path, raw.malformed, columns))
    if not raw.splits:
        raise DataError(
            f"no data files in directory {directory}: expected *.jsonl, *.json, *.csv, *.parquet "
            "or TweetEval {split}_text.txt + {split}_labels.txt"
        )
    return raw


def _read_hub(dataset_id: str, columns: Columns) -> RawSource:
    name, _, config = dataset_id.partition(":")
    try:
        loaded = datasets.load_dataset(name, config or None)
    except Exception as exc:  # network, auth and missing-dataset errors all mean "unusable source"
        raise DataError(f"cannot load Hub dataset {dataset_id!r}: {exc}") from exc
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    raw = RawSource()
    for split, table in loaded.items():
        label_feature = table.features.get(columns.label)
        if isinstance(label_feature, datasets.ClassLabel) and not raw.label_mapping:
            raw.label_mapping = {str(i): n for i, n in enumerate(label_feature.names)}
        raw.add(
            split_name(str(split)),
            _rows_from_columns(table, f"Hub dataset {dataset_id!r} split {split!r}", columns),
        )
    return raw
