"""Batch prediction and evaluation of files with the champion (the ``predict``/``evaluate`` commands)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from model_runner.data import DataError, prepare_dataset
from model_runner.evaluation import compute_metrics
from model_runner.jobs.champion import LoadedModel
from model_runner.tasks import Task


def read_texts(path: Path) -> list[str]:
    """``.txt``: one text per line; ``.jsonl``: objects with a ``text`` field. Order is kept."""
    if not path.exists():
        raise FileNotFoundError(f"input file {path} does not exist")
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix == ".txt":
        return [line for line in lines if line.strip()]
    if path.suffix in {".jsonl", ".json"}:
        texts = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise DataError(f"{path}:{number}: expected an object with a string field 'text'")
            texts.append(row["text"])
        return texts
    raise DataError(f"{path}: unsupported input type {path.suffix!r}; use .txt or .jsonl")


def predict_file(loaded: LoadedModel, input_path: Path, output_path: Path, *, batch_size: int = 64) -> int:
    """One JSON line (label, scores) per text of ``input_path``; returns how many were written.

    ``loaded`` is the champion as ``load_champion`` serves it (``load_for_serving``, the same runtime as
    the service), so the answers are those of ``/inference``.
    """
    texts = read_texts(input_path)
    proba = loaded.model.predict_proba(texts, batch_size=batch_size)
    labels = loaded.model.labels
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with output_path.open("w", encoding="utf-8") as out:
        for row in proba:
            scores = {name: round(float(p), 6) for name, p in zip(labels, row, strict=True)}
            out.write(json.dumps({"label": labels[int(np.argmax(row))], "scores": scores}) + "\n")
    return len(texts)


def evaluate_data(loaded: LoadedModel, task: Task, data: str) -> dict:
    """Metrics of the champion on every labelled row of ``data`` (all splits together)."""
    prepared = prepare_dataset(data, **task.read_options())
    texts = list(prepared.train["text"]) + list(prepared.eval["text"])
    names = [prepared.labels[i] for i in list(prepared.train["label"]) + list(prepared.eval["label"])]
    labels = loaded.model.labels
    unknown = sorted(set(names) - set(labels))
    if unknown:
        raise DataError(f"{data}: labels {unknown} are not known to model {loaded.version.uri} ({labels})")
    y = np.array([labels.index(n) for n in names])
    metrics = compute_metrics(y, loaded.model.predict_proba(texts, clean=False), labels)
    return {"model": loaded.version.uri, "data": str(data), **metrics}
