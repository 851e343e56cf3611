"""The teachers table and the teacher-logits cache in Postgres (migration 0006).

Logits are keyed like embeddings: (teacher key, hash of the normalised text). The teacher key changes
whenever the teacher's weights do (another base revision, another fit), so a refitted teacher never
reads its predecessor's logits. Writes are ``ON CONFLICT DO NOTHING``: two runs computing the same
logits store them once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from model_runner.db import Database


@dataclass(frozen=True)
class TeacherRecord:
    teacher_key: str
    task: str
    base_id: str
    base_revision: str
    labels: list[str]
    data_hash: str
    train_rows: int
    path: str
    run_id: str | None = None
    params: dict = field(default_factory=dict)
    seconds: float | None = None
    created_at: datetime | None = None

    def meta(self) -> dict[str, object]:
        """What a student's model and MLflow run record about the teacher it learnt from."""
        return {
            "key": self.teacher_key,
            "base_id": self.base_id,
            "base_revision": self.base_revision,
            "data_hash": self.data_hash,
            "train_rows": self.train_rows,
            "run_id": self.run_id,
        }


_COLUMNS = (
    "teacher_key, task, base_id, base_revision, labels, data_hash, train_rows, path, run_id, params,"
    " seconds, created_at"
)


class TeacherStore:
    def __init__(self, db: Database, *, write_batch: int = 512):
        self.db = db
        self.write_batch = write_batch

    def latest(
        self, task: str, base_id: str, base_revision: str, labels: Sequence[str]
    ) -> TeacherRecord | None:
        """The newest teacher of ``task`` on these base weights with this label set."""
        with self.db.connect() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM teachers WHERE task = %s AND base_id = %s AND base_revision = %s"
                " AND labels = %s::jsonb ORDER BY created_at DESC LIMIT 1",
                (task, base_id, base_revision, json.dumps(list(labels))),
            ).fetchone()
        return _record(row) if row else None

    def add(self, record: TeacherRecord) -> None:
        with self.db.connect() as conn:
            conn.execute(
                "INSERT INTO teachers (teacher_key, task, base_id, base_revision, labels, data_hash,"
                " train_rows, path, run_id, params, seconds) VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s,"
                " %s, %s, %s::jsonb, %s) ON CONFLICT (teacher_key) DO UPDATE SET path = EXCLUDED.path,"
                " run_id = EXCLUDED.run_id, created_at = now()",
                (
                    record.teacher_key,
                    record.task,
                    record.base_id,
                    record.base_revision,
                    json.dumps(record.labels),
                    record.data_hash,
                    record.train_rows,
                    record.path,
                    record.run_id,
                    json.dumps(record.params),
                    record.seconds,
                ),
            )

    def logits(self, teacher_key: str, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """Cached logits of the texts hashed ``keys`` (those that have them)."""
        with self.db.connect() as conn:
            rows = conn.execute(
                "SELECT text_hash, logits FROM teacher_logits WHERE teacher_key = %s AND text_hash = ANY(%s)",
                (teacher_key, list(keys)),
            ).fetchall()
        return {bytes(h): np.asarray(v, dtype=np.float32) for h, v in rows}

    def put_logits(
        self, teacher_key: str, keys: Sequence[bytes], logits: np.ndarray, *, in_sample: bool
    ) -> int:
        """Store logits under their text keys, all or nothing; returns how many rows were new."""
        logits = np.asarray(logits, dtype=np.float32)
        if logits.ndim != 2 or logits.shape[0] != len(keys):
            raise ValueError(f"expected {len(keys)} rows of logits, got an array of shape {logits.shape}")
        if not np.isfinite(logits).all():
            raise ValueError("refusing to store NaN or infinite teacher logits; nothing was stored")
        inserted = 0
        with self.db.connect() as conn, conn.transaction(), conn.cursor() as cur:
            for start in range(0, len(keys), self.write_batch):
                chunk = range(start, min(start + self.write_batch, len(keys)))
                cur.executemany(
                    "INSERT INTO teacher_logits (teacher_key, text_hash, logits, in_sample)"
                    " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    [(teacher_key, keys[i], logits[i].tolist(), in_sample) for i in chunk],
                    returning=False,
                )
                inserted += max(cur.rowcount, 0)
        return inserted


def _record(row) -> TeacherRecord:
    key, task, base_id, rev, labels, data_hash, rows, path, run_id, params, seconds, created = row
    return TeacherRecord(
        teacher_key=key,
        task=task,
        base_id=base_id,
        base_revision=rev,
        labels=list(labels),
        data_hash=data_hash,
        train_rows=int(rows),
        path=path,
        run_id=run_id,
        params=dict(params or {}),
        seconds=seconds,
        created_at=created,
    )
