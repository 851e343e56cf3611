"""Training jobs in Postgres: the one source of truth for the service, the worker and Airflow.

A partial unique index admits one queued/running job, so two concurrent submissions cannot both
start, whichever process or replica receives them. A job is either claimed at birth by the process
that runs it (``role=all``: ``create(token=...)``) or queued for a ``train`` process, which takes it
with ``claim_next`` (``FOR UPDATE SKIP LOCKED``) and a lease.

Every job carries a lease (``lease_expires_at``) that its worker renews while it lives; a job whose
lease expired is failed by whichever process notices. The worker's own writes name its
``lease_token`` and an active state, so a worker that lost its job changes nothing (0 rows).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, ValidationError, model_serializer

from model_runner.db import Database
from model_runner.db.notify import JOBS_CHANNEL
from model_runner.errors import TweetpulseError

ACTIVE = ("queued", "running")
FINAL = ("succeeded", "failed", "cancelled")
_COLUMNS = {
    "state",
    "stage",
    "detail",
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
    "claimed_by",
}


class _Record(BaseModel):
    # rows written by older versions may carry keys this version does not know: keep them
    model_config = ConfigDict(extra="allow")


class _Compact(_Record):
    # shown as written: the fields that say nothing (None) are left out, as the worker wrote them
    @model_serializer(mode="wrap")
    def _without_none(self, handler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class HubPush(_Compact):
    """A Hub push attempt: the worker's (``hub``) or the service's retry (``hub_retry``)."""

    pushed: bool = False
    repo_id: str | None = None
    commit_id: str | None = None
    reason: str | None = None  # why nothing was pushed (not promoted, no Hub configured)
    error: str | None = None
    version: str | None = None  # the champion version a retry pushed


class ReloadRecord(_Compact):
    """What the service's reload after the job did (``ReloadResult`` as stored)."""

    task: str | None = None
    reloaded: bool = False
    version: str | None = None
    previous: str | None = None
    message: str = ""
    outcome: str | None = None


class JobResult(_Record):
    """The ``result`` column: written in patches by the worker (training outcome, Hub push) and by the
    service's reconciliation (what is served), read back typed by the service and the job route."""

    promoted: bool | None = None
    model_version: str | None = None
    gate: dict[str, Any] | None = None
    mlflow_run_id: str | None = None
    experiment_id: str | None = None
    best_candidate: Any = None
    cv: Any = None
    quantization: dict[str, Any] | None = None
    feedback_rows: int | None = None
    stage_seconds: dict[str, float] | None = None
    champion_before: str | None = None  # the champion when the job started (None: there was none)
    champion_version: str | None = None
    served_version: str | None = None
    hub: HubPush | None = None
    hub_retry: HubPush | None = None
    reload: ReloadRecord | None = None
    reconciled_at: datetime | None = None

    @classmethod
    def read(cls, raw: dict | None) -> JobResult:
        try:
            return cls.model_validate(raw or {})
        except ValidationError:  # a hand-edited row must not make the job unreadable
            return cls.model_construct(**(raw or {}))

    def patch(self) -> dict:
        """The fields that were set, as JSON, for ``JobStore.merge_result``."""
        return self.model_dump(mode="json", exclude_unset=True)


class ActiveJobExists(TweetpulseError, RuntimeError):
    """One job at a time: another job is queued or running."""

    status, type = 409, "conflict"

    def __init__(self, job_id: str | None):
        super().__init__(f"training job {job_id} is already queued or running")
        self.job_id = job_id

    def details(self) -> dict:
        return {"job_id": self.job_id}


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
    result: JobResult
    worker_pid: int | None = None
    worker_host: str | None = None
    worker_started_at: datetime | None = None
    lease_token: str | None = None
    heartbeat_at: datetime | None = None
    lease_expires_at: datetime | None = None
    detail: str | None = None  # where in its stage the job is, e.g. "epoch 2/3, batch 120/400, loss 0.412"
    claimed_by: str | None = None  # "host:pid:start-time" of the process that started its worker

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Job:
        fields = {k: row.get(k) for k in cls.__dataclass_fields__ if k not in ("id", "result")}
        return cls(**fields, id=str(row["id"]), result=JobResult.read(row.get("result")))

    @property
    def settled(self) -> bool:
        """The job ended and the service reconciled what is served after it."""
        return self.state in FINAL and self.result.reconciled_at is not None


class JobStore:
    def __init__(self, db: Database, *, lease_s: float = 60.0):
        self.db = db
        self.lease_s = lease_s

    def create(
        self,
        task: str,
        params: dict,
        *,
        token: str | None = None,
        claimed_by: str | None = None,
        queue_timeout_s: float | None = None,
    ) -> Job:
        """A queued job. With ``token`` the caller runs it itself (the job is claimed at birth and its
        worker must claim it within a lease); without, it waits for a ``train`` process to claim it
        (``claim_next``) for at most ``queue_timeout_s``, and ``NOTIFY tweetpulse_jobs`` wakes them."""
        job_id = uuid.uuid4()
        wait_s = self.lease_s if token is not None or queue_timeout_s is None else queue_timeout_s
        try:
            with self.db.connect() as conn:
                conn.execute(
                    "INSERT INTO training_jobs (id, task, state, stage, params, lease_token, claimed_by,"
                    " lease_expires_at) VALUES (%s, %s, 'queued', 'queued', %s, %s, %s,"
                    " now() + make_interval(secs => %s))",
                    (job_id, task, Jsonb(params), token, claimed_by if token else None, wait_s),
                )
                if token is None:
                    conn.execute("SELECT pg_notify(%s, %s)", (JOBS_CHANNEL, str(job_id)))
        except psycopg.errors.UniqueViolation:
            active = self.active()
            raise ActiveJobExists(active.id if active else None) from None
        return self.get(str(job_id))

    def claim_next(self, token: str, *, host: str, claimed_by: str) -> Job | None:
        """Take the oldest queued job nobody claimed (``FOR UPDATE SKIP LOCKED``: two ``train``
        processes never take the same row): it gets ``token`` and a fresh lease, within which the
        worker this process starts must claim it (``claim``) and renew it. None: nothing queued."""
        with self.db.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "UPDATE training_jobs SET lease_token = %s, worker_host = %s, claimed_by = %s,"
                " stage = 'claimed',"
                " lease_expires_at = now() + make_interval(secs => %s), updated_at = now()"
                " WHERE id = (SELECT id FROM training_jobs WHERE state = 'queued' AND lease_token IS NULL"
                " ORDER BY created_at FOR UPDATE SKIP LOCKED LIMIT 1)"
                " RETURNING *",
                (token, host, claimed_by, self.lease_s),
            ).fetchone()
        return Job.from_row(row) if row else None

    def queue_depth(self) -> int:
        """Jobs waiting for a ``train`` process (queued, not yet claimed)."""
        with self.db.connect() as conn:
            row = conn.execute(
                "SELECT count(*) FROM training_jobs WHERE state = 'queued' AND lease_token IS NULL"
            ).fetchone()
        return int(row[0]) if row else 0

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

    def merge_result(self, job_id: str, patch: JobResult | dict, *, token: str | None = None) -> bool:
        """Add keys to the job's ``result`` (a JSON merge) without rewriting what others wrote; the
        patch is checked against ``JobResult`` first."""
        patch = (patch if isinstance(patch, JobResult) else JobResult.model_validate(patch)).patch()
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
                " error = CASE WHEN lease_token IS NULL THEN"
                " 'no train process claimed the job before its queue timeout' ELSE"
                " 'interrupted: the worker'"
                " || coalesce(' on ' || worker_host, '') || coalesce(' (pid ' || worker_pid || ')', '')"
                " || ' stopped renewing its lease'"
                " || coalesce(' (last heartbeat ' || to_char(heartbeat_at AT TIME ZONE 'UTC',"
                " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') || ')', '') END"
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
