"""The triggerer side of waiting for a training job: poll ``GET /train/{job_id}`` asynchronously.

A task that waits for a job defers to :class:`TrainingJobTrigger` and gives its worker slot back; the
triggerer polls the ModelRunner every ``poll_s`` seconds on its event loop and fires ONE event:

* ``{"status": "done", "state": <succeeded|failed|cancelled>}`` once the job ended and the ModelRunner
  reconciled it (``settled``; a job that ended more than ``settle_grace_s`` ago counts as settled);
* ``{"status": "timed_out", "state": <last state>}`` when the job is still queued or running at
  ``deadline`` (epoch seconds): the resumed task decides what to do (weekly_retrain cancels it);
* ``{"status": "error", "error": ...}`` when the service refuses the request (4xx: unknown job, bad
  token) or stayed unreachable for ``unreachable_s``: the resumed task fails and Airflow retries it.

Passing outages (connection errors, 5xx, 429) are only logged: the next poll tries again. The token is
read from the connection when the trigger runs; the trigger's serialized kwargs (stored in the
``trigger`` table) hold the connection id, never the secret.

The triggerer imports this class by its classpath ``tweetpulse_dags.triggers.TrainingJobTrigger``:
the DAGs folder must be on the triggerer's ``PYTHONPATH`` (see airflow/README.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
from airflow.triggers.base import BaseTrigger, TriggerEvent

from tweetpulse_dags.config import RUNNER_CONN_ID
from tweetpulse_dags.runner_api import FINAL_STATES
from tweetpulse_dags.runner_client import RunnerConfig, aconfig_from_connection, error_from

SETTLE_GRACE_S = 300.0  # after this long past ``finished_at`` a job counts as reconciled
UNREACHABLE_S = 900.0  # fail the wait (the task retries) after the service was away this long
CLASSPATH = "tweetpulse_dags.triggers.TrainingJobTrigger"


class TrainingJobTrigger(BaseTrigger):
    def __init__(
        self,
        job_id: str,
        deadline: float,
        poll_s: float = 60.0,
        conn_id: str = RUNNER_CONN_ID,
        settle_grace_s: float = SETTLE_GRACE_S,
        unreachable_s: float = UNREACHABLE_S,
    ):
        super().__init__()
        self.job_id, self.deadline, self.poll_s, self.conn_id = (
            job_id,
            float(deadline),
            float(poll_s),
            conn_id,
        )
        self.settle_grace_s, self.unreachable_s = float(settle_grace_s), float(unreachable_s)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return CLASSPATH, {
            "job_id": self.job_id,
            "deadline": self.deadline,
            "poll_s": self.poll_s,
            "conn_id": self.conn_id,
            "settle_grace_s": self.settle_grace_s,
            "unreachable_s": self.unreachable_s,
        }

    async def run(self) -> AsyncIterator[TriggerEvent]:
        config = await aconfig_from_connection(self.conn_id)
        polls, last_ok, state = 0, time.monotonic(), None
        async with http_client(config) as http:
            while True:
                polls += 1
                try:
                    view = await self._poll(http)
                except _Passing as exc:
                    away = time.monotonic() - last_ok
                    self.log.warning(
                        "job %s: poll %d failed (%s); away for %.0f s", self.job_id, polls, exc, away
                    )
                    if away > self.unreachable_s:
                        yield self._event("error", state, polls, error=f"ModelRunner unreachable: {exc}")
                        return
                except _Refused as exc:
                    yield self._event("error", state, polls, error=str(exc))
                    return
                else:
                    last_ok, state = time.monotonic(), view["state"]
                    self.log.info(
                        "job %s: %s, stage %s, %.0f%% (poll %d)",
                        self.job_id, state, view.get("stage"), 100 * float(view.get("progress") or 0), polls,
                    )  # fmt: skip
                    if state in FINAL_STATES and self._settled(view):
                        yield self._event("done", state, polls)
                        return
                if state not in FINAL_STATES and time.time() > self.deadline:
                    yield self._event("timed_out", state, polls)
                    return
                await asyncio.sleep(self.poll_s)

    async def _poll(self, http: httpx.AsyncClient) -> dict[str, Any]:
        try:
            response = await http.get(f"/train/{self.job_id}")
        except httpx.TransportError as exc:
            raise _Passing(f"{type(exc).__name__}: {exc}") from exc
        if response.is_success:
            return response.json()
        error = error_from(response)
        if response.status_code >= 500 or response.status_code == 429:
            raise _Passing(str(error))
        raise _Refused(str(error))

    def _settled(self, view: dict[str, Any]) -> bool:
        """The ModelRunner marks a job ``settled`` after it reconciled (reload, Hub retry); a view without
        the field comes from an older ModelRunner and is settled as is."""
        if view.get("settled", True):
            return True
        try:
            finished = datetime.fromisoformat(view["finished_at"]).timestamp()
        except (KeyError, TypeError, ValueError):
            return True
        return time.time() - finished > self.settle_grace_s

    def _event(self, status: str, state: str | None, polls: int, **extra: Any) -> TriggerEvent:
        payload = {"status": status, "job_id": self.job_id, "state": state, "polls": polls, **extra}
        self.log.info("job %s: firing %s", self.job_id, payload)
        return TriggerEvent(payload)


def http_client(config: RunnerConfig) -> httpx.AsyncClient:
    """The async client the trigger polls with: base URL, bearer token and timeouts of the connection."""
    headers = {"Authorization": f"Bearer {config.token}"} if config.token else {}
    timeout = httpx.Timeout(config.timeout_s, connect=min(10.0, config.timeout_s))
    return httpx.AsyncClient(base_url=config.base_url, headers=headers, timeout=timeout)


class _Passing(Exception):
    """An outage the next poll may not see (connection error, 5xx, 429)."""


class _Refused(Exception):
    """The service answered that this request cannot succeed (4xx)."""
