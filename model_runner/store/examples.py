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
import psycopg

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

    def upsert(self, examples: Iterable[Example], *, cur: psycopg.Cursor | None = None) -> int:
        """Insert examples not seen before for this task (the first label of a text wins); returns how
        many were new. ``cur``: inside the caller's transaction."""
        rows = []
        for ex in examples:
            text = normalise(ex.text)
            if text and ex.label:
                rows.append((self.task, text, text_key(text), ex.label, ex.source, ex.split))
        if not rows:
            return 0
        if cur is not None:
            return self._insert(cur, rows)
        with self.db.connect() as conn, conn.cursor() as own:
            return self._insert(own, rows)

    @staticmethod
    def _insert(cur: psycopg.Cursor, rows: list[tuple]) -> int:
        cur.executemany(
            "INSERT INTO labelled_examples (task, text, text_hash, label, source, split)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (task, text_hash) DO NOTHING",
            rows,
        )
        # executemany's rowcount is the sum over statements: the rows really inserted
        return max(cur.rowcount, 0)

    def feedback(self) -> list[dict[str, str]]:
        """Labelled feedback (review queue answers), oldest first: it joins every retrain of the task."""
        with self.db.connect() as conn:
            rows = conn.execute(
                "SELECT text, label FROM labelled_examples"
                " WHERE task = %s AND source = 'feedback' ORDER BY id",
                (self.task,),
            ).fetchall()
        return [{"text": text, "label": label} for text, label in rows]

    def label_counts(self, *, split: str = "train") -> dict[str, int]:
        with self.db.connect() as conn:
            rows = conn.execute(
                "SELECT label, count(*) FROM labelled_examples WHERE task = %s AND split = %s GROUP BY 1",
                (self.task, split),
            ).fetchall()
        return dict(rows)

    def reference_count(self) -> int:
        """Training examples stored as drift's reference (feedback rows not counted)."""
        with self.db.connect() as conn:
            (n,) = conn.execute(
                "SELECT count(*) FROM labelled_examples"
                " WHERE task = %s AND split = 'train' AND source <> 'feedback'",
                (self.task,),
            ).fetchone()
        return n

    def without_embedding(self, encoder_id: str, revision: str, *, limit: int) -> list[str]:
        """Texts of training examples that have no vector of this encoder yet."""
        with self.db.connect() as conn:
            rows = conn.execute(
                "SELECT x.text FROM labelled_examples x LEFT JOIN embeddings e ON e.text_hash = x.text_hash"
                " AND e.encoder_id = %s AND e.encoder_revision = %s"
                " WHERE x.task = %s AND x.split = 'train' AND e.text_hash IS NULL LIMIT %s",
                (encoder_id, revision, self.task, limit),
            ).fetchall()
        return [r[0] for r in rows]

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
