"""Labelled examples in Postgres: the imported datasets and the labels that come back from review.

Rows are unique per (task, hash of the normalised text): importing the same file twice, or a
reviewer labelling a tweet that is already known, adds nothing. ``added_since`` is how the weekly
retrain finds what is new since the last run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from model_runner.db import Database
from model_runner.store.keys import normalise, text_key


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    source: str
    split: str = "train"


@dataclass(frozen=True)
class SimilarExample:
    text: str
    label: str
    similarity: float


class ExampleStore:
    def __init__(self, db: Database, task: str = "sentiment"):
        self.db = db
        self.task = task

    def upsert(self, examples: Iterable[Example]) -> int:
        """Insert examples not seen before for this task; returns how many were new."""
        rows = []
        for ex in examples:
            text = normalise(ex.text)
            if text and ex.label:
                rows.append((self.task, text, text_key(text), ex.label, ex.source, ex.split))
        if not rows:
            return 0
        with self.db.connect() as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO labelled_examples (task, text, text_hash, label, source, split)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (task, text_hash) DO NOTHING",
                rows,
            )
            # executemany's rowcount is the sum over statements: the rows really inserted
            return max(cur.rowcount, 0)

    def added_since(self, since: datetime | None, *, split: str = "train") -> list[Example]:
        with self.db.connect() as conn:
            rows = conn.execute(
                "SELECT text, label, source, split FROM labelled_examples"
                " WHERE task = %s AND split = %s AND (%s::timestamptz IS NULL OR added_at > %s)"
                " ORDER BY id",
                (self.task, split, since, since),
            ).fetchall()
        return [Example(*row) for row in rows]

    def count(self) -> int:
        with self.db.connect() as conn:
            (n,) = conn.execute(
                "SELECT count(*) FROM labelled_examples WHERE task = %s", (self.task,)
            ).fetchone()
        return n

    def similar(
        self, vector: Sequence[float], encoder_id: str, revision: str, k: int
    ) -> list[SimilarExample]:
        """Nearest labelled examples to ``vector`` among those embedded with the given encoder."""
        dim = len(vector)
        with self.db.connect() as conn:
            conn.execute(f"SET LOCAL hnsw.ef_search = {max(40, 4 * k)}")
            rows = conn.execute(
                f"SELECT x.text, x.label, 1 - (e.embedding::vector({dim}) <=> %(q)s::vector({dim}))"
                f" FROM embeddings e JOIN labelled_examples x ON x.text_hash = e.text_hash AND x.task = %(t)s"
                f" WHERE e.dim = {dim} AND e.encoder_id = %(id)s AND e.encoder_revision = %(rev)s"
                f" ORDER BY e.embedding::vector({dim}) <=> %(q)s::vector({dim}) LIMIT %(k)s",
                {
                    "q": np.asarray(vector, dtype=np.float32),
                    "t": self.task,
                    "id": encoder_id,
                    "rev": revision,
                    "k": k,
                },
            ).fetchall()
        return [SimilarExample(text, label, float(sim)) for text, label, sim in rows]
