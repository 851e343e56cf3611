"""Training jobs in Postgres: the one source of truth for the service, the worker and Airflow.

A partial unique index admits one queued/running job, so two concurrent submissions cannot both
start, whichever process or replica receives them.

Every job carries a lease (``lease_expires_at``) that its worker renews while it lives; a job whose
lease expired is failed by whichever process notices. The worker's own writes name its
``lease_token`` and an active state, so a worker that lost its job changes nothing (0 rows).
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
    "worker_started_at",
    "lease_token",
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
    worker_pid: int | None = None
    worker_host: str | None = None
    worker_started_at: datetime | None = None
    lease_token: str | None = None
    heartbeat_at: datetime | None = None
    lease_expires_at: datetime | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Job:
        return cls(**{k: row.get(k) for k in cls.__dataclass_fields__ if k != "id"}, id=str(row["id"]))


class JobStore:
    def __init__(self, db: Database | Callable[[], Database], *, lease_s: float = 60.0):
        # a callable defers connecting (and starting an embedded Postgres) to the first use
        self._db = db
        self.lease_s = lease_s

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
                    "INSERT INTO training_jobs (id, task, state, stage, params, lease_expires_at)"
                    " VALUES (%s, %s, 'queued', 'queued', %s, now() + make_interval(secs => %s))",
                    (job_id, task, Jsonb(params), self.lease_s),
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

    def active_jobs(self) -> list[Job]:
        with self.db.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                "SELECT * FROM training_jobs WHERE state IN ('queued', 'running') ORDER BY created_at"
            ).fetchall()
        return [Job.from_row(r) for r in rows]

    def update(
        self, job_id: str, *, only_if_active: bool = False, token: str | None = None, **fields: Any
    ) -> bool:
        """Set columns; with ``only_if_active`` a job that already ended is left alone, and with
        ``token`` (the worker's writes) only an active job that still names that lease token changes."""
        unknown = set(fields) - _COLUMNS
        if unknown:
            raise ValueError(f"unknown job columns {sorted(unknown)}")
        values = [Jsonb(v) if k in {"metrics", "result"} else v for k, v in fields.items()]
        sets = ", ".join(f"{k} = %s" for k in fields)
        guard, extra = "", ()
        if only_if_active or token is not None:
            guard = " AND state IN ('queued', 'running')"
        if token is not None:
            guard += " AND lease_token = %s"
            extra = (token,)
        with self.db.connect() as conn:
            cur = conn.execute(
                f"UPDATE training_jobs SET {sets}, updated_at = now() WHERE id = %s{guard}",
                (*values, uuid.UUID(job_id), *extra),
            )
            return cur.rowcount == 1

    def merge_result(self, job_id: str, patch: dict, *, token: str | None = None) -> bool:
        """Add keys to the job's ``result`` (a JSON merge) without rewriting what others wrote."""
        guard, extra = "", ()
        if token is not None:
            guard, extra = " AND state IN ('queued', 'running') AND lease_token = %s", (token,)
        with self.db.connect() as conn:
            cur = conn.execute(
                f"UPDATE training_jobs SET result = result || %s, updated_at = now() WHERE id = %s{guard}",
                (Jsonb(patch), uuid.UUID(job_id), *extra),
            )
            return cur.rowcount == 1

    # --- the lease -----------------------------------------------------------------------------------
    def claim(self, job_id: str, token: str, *, pid: int, host: str, started_at: datetime | None) -> bool:
        """The worker takes its queued job: running, its identity, a fresh lease. False: not ours."""
        with self.db.connect() as conn:
            cur = conn.execute(
                "UPDATE training_jobs SET state = 'running', stage = 'starting', started_at = now(),"
                " worker_pid = %s, worker_host = %s, worker_started_at = %s, lease_token = %s,"
                " heartbeat_at = now(), lease_expires_at = now() + make_interval(secs => %s),"
                " updated_at = now()"
                " WHERE id = %s AND state = 'queued' AND (lease_token IS NULL OR lease_token = %s)",
                (pid, host, started_at, token, self.lease_s, uuid.UUID(job_id), token),
            )
            return cur.rowcount == 1

    def heartbeat(self, job_id: str, token: str) -> bool:
        """Renew the lease for another ``lease_s``; False when the job no longer belongs to ``token``."""
        with self.db.connect() as conn:
            cur = conn.execute(
                "UPDATE training_jobs SET heartbeat_at = now(),"
                " lease_expires_at = now() + make_interval(secs => %s)"
                " WHERE id = %s AND state = 'running' AND lease_token = %s",
                (self.lease_s, uuid.UUID(job_id), token),
            )
            return cur.rowcount == 1

    def lease_live(self, job: Job) -> bool:
        """The job's lease has not expired (by the database's clock)."""
        with self.db.connect() as conn:
            row = conn.execute(
                "SELECT lease_expires_at IS NOT NULL AND lease_expires_at > now() FROM training_jobs"
                " WHERE id = %s",
                (uuid.UUID(job.id),),
            ).fetchone()
        return bool(row and row[0])

    def fail(self, job_id: str, reason: str, *, only_if_expired: bool = False) -> bool:
        """End an active job as failed (e.g. its worker is gone); False when it already ended."""
        guard = " AND (lease_expires_at IS NULL OR lease_expires_at <= now())" if only_if_expired else ""
        with self.db.connect() as conn:
            cur = conn.execute(
                "UPDATE training_jobs SET state = 'failed', error = %s, finished_at = now(),"
                f" updated_at = now() WHERE id = %s AND state IN ('queued', 'running'){guard}",
                (reason, uuid.UUID(job_id)),
            )
            return cur.rowcount == 1

    def fail_expired(self, *, exclude: list[str] | tuple[str, ...] = ()) -> list[str]:
        """Fail every active job whose lease expired (its worker stopped heartbeating), but ``exclude``."""
        keys = [uuid.UUID(j) for j in exclude]
        with self.db.connect() as conn:
            rows = conn.execute(
                "UPDATE training_jobs SET state = 'failed', finished_at = now(), updated_at = now(),"
                " error = 'interrupted: the worker'"
                " || coalesce(' on ' || worker_host, '') || coalesce(' (pid ' || worker_pid || ')', '')"
                " || ' stopped renewing its lease'"
                " || coalesce(' (last heartbeat ' || to_char(heartbeat_at AT TIME ZONE 'UTC',"
                " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') || ')', '')"
                " WHERE state IN ('queued', 'running')"
                " AND (lease_expires_at IS NULL OR lease_expires_at <= now()) AND NOT (id = ANY(%s))"
                " RETURNING id",
                (keys,),
            ).fetchall()
        return [str(r[0]) for r in rows]

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
