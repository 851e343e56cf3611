"""Training jobs in Postgres: the one source of truth for the service, the worker and Airflow.

A partial unique index admits one queued/running job, so two concurrent submissions cannot both
start, whichever process or replica receives them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from model_runner.db import Database

ACTIVE = ("queued", "running")
FINAL = ("succeeded", "failed", "cancelled")
_COLUMNS = {
    "state",
    "stage",
    "progress",
    "metrics",
    "model_version",
    "error",
    "started_at",
    "finished_at",
    "worker_pid",
    "worker_host",
    "result",
}


class ActiveJobExists(RuntimeError):
    def __init__(self, job_id: str | None):
        super().__init__(f"training job {job_id} is already queued or running")
        self.job_id = job_id


@dataclass
class Job:
    id: str
    task: str
    state: str
    stage: str | None
    progress: float
    params: dict
    metrics: dict | None
    model_version: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested: bool
    result: dict

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Job:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__ if k != "id"}, id=str(row["id"]))


class JobStore:
    def __init__(self, db: Database | Callable[[], Database]):
        # a callable defers connecting (and starting an embedded Postgres) to the first use
        self._db = db

    @property
    def db(self) -> Database:
        if callable(self._db) and not isinstance(self._db, Database):
            self._db = self._db()
        return self._db

    def create(self, task: str, params: dict) -> Job:
        job_id = uuid.uuid4()
        try:
            with self.db.connect() as conn:
                conn.execute(
                    "INSERT INTO training_jobs (id, task, state, stage, params) VALUES (%s, %s, 'queued',"
                    " 'queued', %s)",
                    (job_id, task, Jsonb(params)),
                )
        except psycopg.errors.UniqueViolation:
            active = self.active()
            raise ActiveJobExists(active.id if active else None) from None
        return self.get(str(job_id))

    def get(self, job_id: str) -> Job | None:
        try:
            key = uuid.UUID(job_id)
        except ValueError:
            return None
        with self.db.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute("SELECT * FROM training_jobs WHERE id = %s", (key,)).fetchone()
        return Job.from_row(row) if row else None

    def active(self) -> Job | None:
        with self.db.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "SELECT * FROM training_jobs WHERE state IN ('queued', 'running') LIMIT 1"
            ).fetchone()
        return Job.from_row(row) if row else None

    def recent(self, limit: int = 20) -> list[Job]:
        with self.db.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                "SELECT * FROM training_jobs ORDER BY created_at DESC LIMIT %s", (limit,)
            ).fetchall()
        return [Job.from_row(r) for r in rows]

    def update(self, job_id: str, *, only_if_active: bool = False, **fields: Any) -> bool:
        """Set columns; with ``only_if_active`` a job that already ended is left alone."""
        unknown = set(fields) - _COLUMNS
        if unknown:
            raise ValueError(f"unknown job columns {sorted(unknown)}")
        values = [Jsonb(v) if k in {"metrics", "result"} else v for k, v in fields.items()]
        sets = ", ".join(f"{k} = %s" for k in fields)
        guard = " AND state IN ('queued', 'running')" if only_if_active else ""
        with self.db.connect() as conn:
            cur = conn.execute(
                f"UPDATE training_jobs SET {sets}, updated_at = now() WHERE id = %s{guard}",
                (*values, uuid.UUID(job_id)),
            )
            return cur.rowcount == 1

    def request_cancel(self, job_id: str) -> Job | None:
        """Queued jobs end at once; running ones are asked to stop at their next checkpoint."""
        key = uuid.UUID(job_id)
        with self.db.connect() as conn:
            conn.execute(
                "UPDATE training_jobs SET state = 'cancelled', stage = 'cancelled', error = 'cancelled',"
                " finished_at = now(), updated_at = now() WHERE id = %s AND state = 'queued'",
                (key,),
            )
            conn.execute(
                "UPDATE training_jobs SET cancel_requested = true, updated_at = now()"
                " WHERE id = %s AND state = 'running'",
                (key,),
            )
        return self.get(job_id)

    def cancel_requested(self, job_id: str) -> bool:
        with self.db.connect() as conn:
            row = conn.execute(
                "SELECT cancel_requested FROM training_jobs WHERE id = %s", (uuid.UUID(job_id),)
            ).fetchone()
        return bool(row and row[0])

    def mark_interrupted(self, reason: str) -> list[str]:
        """Jobs a dead process left queued or running end as failed, never stay 'running'."""
        with self.db.connect() as conn:
            rows = conn.execute(
                "UPDATE training_jobs SET state = 'failed', error = %s, finished_at = now(),"
                " updated_at = now() WHERE state IN ('queued', 'running') RETURNING id",
                (reason,),
            ).fetchall()
        return [str(r[0]) for r in rows]
