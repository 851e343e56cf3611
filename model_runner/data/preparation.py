"""Turn a labelled-tweet source into clean, deduplicated train/eval ``datasets.Dataset`` objects.

Every row that does not make it into the output is counted under one drop reason, so
``rows_in == sum(rows_out.values()) + sum(dropped.values())`` always holds and a data problem shows
up in the run summary instead of silently shrinking the training set.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import datasets

from model_runner.data.cleaning import clean_text
from model_runner.data.dedup import CleanRow, deduplicate
from model_runner.data.labels import LabelResolver
from model_runner.data.readers import BROKEN_LINE, Columns, DataError, load_raw
from model_runner.data.splits import stratified_split

logger = logging.getLogger(__name__)

DROP_REASONS = (
    BROKEN_LINE,
    "missing_text",
    "non_string_text",
    "empty_text",
    "missing_label",
    "unknown_label",
    "duplicate",
    "conflicting_label",
)
# Preference order for an explicit evaluation split shipped with the data.
_EVAL_SPLITS = ("validation", "test")


@dataclass
class DataSummary:
    source: str
    rows_in: int
    rows_out: dict[str, int]
    dropped: dict[str, int]
    conflicts: int
    conflict_examples: list[dict]
    class_balance: dict[str, dict[str, int]]
    labels: list[str]
    dataset_hash: str
    eval_source: str

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))


@dataclass
class PreparedData:
    train: datasets.Dataset
    eval: datasets.Dataset
    labels: list[str]
    summary: DataSummary = field(repr=False)


def _refuse_unnamed_integers(resolver: LabelResolver, kept: int, source) -> None:
    """Integer labels that no map names are never guessed: when they are most of the labelled rows the
    data needs a label map, and the error says which values to name."""
    unnamed = resolver.unnamed_integers
    if unnamed and unnamed.total() >= kept:
        values = ", ".join(str(v) for v in sorted(unnamed)[:20]) + (", ..." if len(unnamed) > 20 else "")
        example = ",".join(f"{v}=NAME" for v in sorted(unnamed)[:3])
        raise DataError(
            f"{os.fspath(source)!r} labels its rows with integers ({values})"
            f" that no label map names; pass a label map such as {example}"
            " (CLI --label-map, POST /train label_map, or the task's label_map)"
        )


def _check_fraction(name: str, value: float, *, allow_one: bool) -> None:
    if not (0 < value < 1 or (allow_one and value == 1)):
        bound = "(0, 1]" if allow_one else "(0, 1)"
        raise DataError(f"{name} must be in {bound}, got {value!r}")


def _clean_rows(
    rows: Iterable[Mapping], role: str, resolver: LabelResolver, dropped: Counter[str]
) -> list[CleanRow]:
    out: list[CleanRow] = []
    for row in rows:
        text = row.get("text")
        if text is None:
            dropped["missing_text"] += 1
            continue
        if not isinstance(text, str):
            dropped["non_string_text"] += 1
            continue
        cleaned = clean_text(text)
        if not cleaned:
            dropped["empty_text"] += 1
            continue
        label, reason = resolver.resolve(row.get("label"))
        if reason is not None or label is None:
            dropped[reason or "unknown_label"] += 1
            continue
        out.append(CleanRow(text=cleaned, label=label, role=role))
    return out


def _dataset(rows: list[CleanRow], labels: list[str]) -> datasets.Dataset:
    features = datasets.Features(text=datasets.Value("string"), label=datasets.ClassLabel(names=labels))
    index = {name: i for i, name in enumerate(labels)}
    return datasets.Dataset.from_dict(
        {"text": [r.text for r in rows], "label": [index[r.label] for r in rows]}, features=features
    )


def _named_rows(ds: datasets.Dataset, labels: list[str]) -> list[tuple[str, str]]:
    return [(text, labels[label]) for text, label in zip(ds["text"], ds["label"], strict=True)]


def _dataset_hash(splits: Mapping[str, list[tuple[str, str]]]) -> str:
    digest = hashlib.sha256()
    for split, text, label in sorted((s, t, lab) for s, rows in splits.items() for t, lab in rows):
        digest.update(json.dumps([split, text, label], ensure_ascii=False).encode("utf-8") + b"\n")
    return digest.hexdigest()


def prepare_dataset(
    source: str | os.PathLike[str],
    *,
    label_names: Sequence[str] | None = None,
    label_map: Mapping[str, str] | None = None,
    eval_fraction: float = 0.2,
    sample_fraction: float | None = None,
    seed: int = 13,
    extra_rows: Iterable[Mapping] | None = None,
    text_column: str = "text",
    label_column: str = "label",
) -> PreparedData:
    """Read, clean, deduplicate and split ``source`` (file, directory or Hub id ``owner/name[:config]``).

    Eval is the data's ``validation`` split, else its ``test`` split, else a stratified
    ``eval_fraction`` of train. ``extra_rows`` (e.g. newly labelled tweets) join train before
    cleaning; ``sample_fraction`` keeps a stratified share of train for quick runs.
    """
    _check_fraction("eval_fraction", eval_fraction, allow_one=False)
    if sample_fraction is not None:
        _check_fraction("sample_fraction", sample_fraction, allow_one=True)

    raw = load_raw(source, Columns(text_column, label_column))
    dropped: Counter[str] = Counter(dict.fromkeys(DROP_REASONS, 0))
    dropped.update(raw.malformed)
    extra = list(extra_rows or [])
    extra_ok = [row for row in extra if isinstance(row, Mapping)]
    dropped[BROKEN_LINE] += len(extra) - len(extra_ok)
    rows_in = sum(len(rows) for rows in raw.splits.values()) + sum(raw.malformed.values()) + len(extra)

    eval_split = next((s for s in _EVAL_SPLITS if s in raw.splits), None)
    unused = [s for s in _EVAL_SPLITS if s in raw.splits and s != eval_split]
    train_splits = [s for s in raw.splits if s not in _EVAL_SPLITS]
    if unused:
        logger.info("using split %r for evaluation; ignoring split(s) %s", eval_split, unused)

    resolver = LabelResolver(label_names=label_names, label_map=label_map, source_mapping=raw.label_mapping)
    # Eval rows go first so that deduplication keeps their copy of a text shared with train.
    candidates = _clean_rows(raw.splits.get(eval_split, []) if eval_split else [], "eval", resolver, dropped)
    for split in train_splits:
        candidates += _clean_rows(raw.splits[split], "train", resolver, dropped)
    candidates += _clean_rows(extra_ok, "train", resolver, dropped)
    _refuse_unnamed_integers(resolver, len(candidates), source)
    dedup = deduplicate(candidates, dropped)

    if not dedup.rows:
        reasons = {k: v for k, v in dropped.items() if v}
        raise DataError(f"no valid rows in {os.fspath(source)!r} (dropped: {reasons or 'none, it is empty'})")
    labels = resolver.order({r.label for r in dedup.rows})
    if len(labels) < 2:
        raise DataError(f"{os.fspath(source)!r} has fewer than 2 classes after cleaning: {labels}")
    # Canonical order makes the seeded split/sample independent of the order rows arrived in.
    train_rows = sorted((r for r in dedup.rows if r.role == "train"), key=lambda r: (r.text, r.label))
    eval_rows = [r for r in dedup.rows if r.role == "eval"]
    if not train_rows:
        raise DataError(f"{os.fspath(source)!r} has no usable training rows (splits: {sorted(raw.splits)})")
    if eval_split is not None and not eval_rows:
        raise DataError(f"evaluation split {eval_split!r} of {os.fspath(source)!r} has no usable rows")

    train = _dataset(train_rows, labels)
    if eval_split is None:
        train, evaluation = stratified_split(train, test_size=eval_fraction, seed=seed, purpose="eval split")
    else:
        evaluation = _dataset(eval_rows, labels)
    sampled_out = 0
    if sample_fraction is not None and sample_fraction < 1:
        before = len(train)
        train, _ = stratified_split(train, train_size=sample_fraction, seed=seed, purpose="train sample")
        sampled_out = before - len(train)
        logger.info("sample_fraction=%s: training on %d of %d rows", sample_fraction, len(train), before)

    named = {"train": _named_rows(train, labels), "eval": _named_rows(evaluation, labels)}
    balance = {split: {name: 0 for name in labels} for split in named}
    for split, rows in named.items():
        for _, label in rows:
            balance[split][label] += 1
    for name in labels:
        if balance["train"][name] == 0:
            logger.warning("class %r has no training rows", name)

    rows_out = {"train": len(train), "eval": len(evaluation)}
    if unused:
        rows_out["unused"] = sum(len(raw.splits[s]) for s in unused)
    if sampled_out:
        rows_out["sampled_out"] = sampled_out
    summary = DataSummary(
        source=os.fspath(source),
        rows_in=rows_in,
        rows_out=rows_out,
        dropped=dict(dropped),
        conflicts=dedup.conflicts,
        conflict_examples=dedup.conflict_examples,
        class_balance=balance,
        labels=labels,
        dataset_hash=_dataset_hash(named),
        eval_source=f"file:{eval_split}" if eval_split else "stratified_split",
    )
    logger.info(
        "prepared %s: %d train / %d eval rows, labels=%s, dropped=%s",
        summary.source,
        len(train),
        len(evaluation),
        labels,
        {k: v for k, v in dropped.items() if v},
    )
    return PreparedData(train=train, eval=evaluation, labels=labels, summary=summary)
