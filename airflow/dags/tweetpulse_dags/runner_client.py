"""A typed HTTP client for the ModelRunner: timeouts on every call, bounded retries with backoff.

Only failures that can pass are retried: connection errors, 429/502/503/504 (honouring Retry-After up
to a cap) and, for idempotent calls, read timeouts and 500s. A 4xx is the caller's mistake and fails
at once with the service's ``{"error": {"type", "message"}}``. The token is sent, never logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Self

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from tweetpulse_dags.config import RUNNER_CONN_ID

log = logging.getLogger(__name__)

_RETRY_ALWAYS = {429, 502, 503, 504}
_RETRY_IDEMPOTENT = {500}
_MAX_RETRY_AFTER_S = 60.0


class RunnerError(Exception):
    """The ModelRunner answered with an error, or could not be reached after the retries."""

    def __init__(self, status: int | None, error_type: str, message: str, body: dict | None = None):
        super().__init__(f"ModelRunner {status or 'unreachable'} {error_type}: {message}")
        self.status, self.error_type, self.message = status, error_type, message
        self.body = body or {}
        self.retry_after: float | None = None


class JobConflict(RunnerError):
    """A training job is already queued or running (409); ``job_id`` is that job."""

    @property
    def job_id(self) -> str | None:
        return self.body.get("error", {}).get("job_id")


@dataclass(frozen=True)
class RunnerConfig:
    base_url: str
    token: str | None = field(default=None, repr=False)
    timeout_s: float = 60.0
    retries: int = 4
    backoff_max_s: float = 20.0


def config_from_connection(conn_id: str = RUNNER_CONN_ID) -> RunnerConfig:
    """An Airflow connection (type ``http`` or ``generic``): schema, host, port; token = password;
    extra ``timeout`` and ``retries``."""
    from airflow.sdk import BaseHook

    return config_from(BaseHook.get_connection(conn_id))


async def aconfig_from_connection(conn_id: str = RUNNER_CONN_ID) -> RunnerConfig:
    """The same, read without blocking an event loop (the triggerer's)."""
    from airflow.sdk import BaseHook

    return config_from(await BaseHook.aget_connection(conn_id))


def config_from(conn: Any) -> RunnerConfig:
    host = (conn.host or "127.0.0.1").rstrip("/")
    if "://" not in host:
        host = f"{conn.schema or 'http'}://{host}"
    url = f"{host}:{conn.port}" if conn.port else host
    extra = conn.extra_dejson or {}
    return RunnerConfig(
        base_url=url,
        token=conn.password or None,
        timeout_s=float(extra.get("timeout", 60)),
        retries=int(extra.get("retries", 4)),
    )


class ModelRunnerClient:
    def __init__(self, config: RunnerConfig, *, transport: httpx.BaseTransport | None = None):
        self.config = config
        timeout = httpx.Timeout(config.timeout_s, connect=min(10.0, config.timeout_s))
        self._http = httpx.Client(base_url=config.base_url, timeout=timeout, transport=transport)

    @classmethod
    def from_connection(cls, conn_id: str = RUNNER_CONN_ID) -> Self:
        return cls(config_from_connection(conn_id))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport -------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict | None = None,
        auth: bool = False,
        idempotent: bool = True,
        timeout_s: float | None = None,
    ) -> Any:
        headers = {}
        if auth and not self.config.token:
            why = f"{method} {path} needs the API token (the connection's password)"
            raise RunnerError(None, "no_token", why)
        if self.config.token:  # every route but /health/* needs a token, reads included
            headers["Authorization"] = f"Bearer {self.config.token}"
        params = {k: v for k, v in (params or {}).items() if v is not None}

        def retryable(exc: BaseException) -> bool:
            if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
                return True  # the request never reached the service
            if isinstance(exc, httpx.TransportError):
                return idempotent
            if isinstance(exc, RunnerError) and exc.status is not None:
                return exc.status in _RETRY_ALWAYS or (idempotent and exc.status in _RETRY_IDEMPOTENT)
            return False

        backoff = wait_exponential_jitter(initial=1, max=self.config.backoff_max_s)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            hinted = getattr(exc, "retry_after", None)
            return min(hinted, _MAX_RETRY_AFTER_S) if hinted else backoff(state)

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning("%s %s failed (%s); retry %d", method, path, exc, state.attempt_number)

        retrying = Retrying(
            retry=retry_if_exception(retryable),
            stop=stop_after_attempt(self.config.retries + 1),
            wait=wait,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(self._once, method, path, json, params, headers, timeout_s)
        except httpx.TransportError as exc:
            raise RunnerError(None, "unreachable", f"{method} {path}: {type(exc).__name__}: {exc}") from exc

    def _once(
        self, method: str, path: str, json: Any, params: dict, headers: dict, timeout_s: float | None
    ) -> Any:
        # slow routes (drift embeds missing vectors first) get their own, longer read timeout
        timeout = httpx.Timeout(timeout_s, connect=10.0) if timeout_s else httpx.USE_CLIENT_DEFAULT
        response = self._http.request(
            method, path, json=json, params=params, headers=headers, timeout=timeout
        )
        if response.is_success:
            return response.json()
        raise error_from(response)


def error_from(response: httpx.Response) -> RunnerError:
    """The service's ``{"error": {"type", "message"}}`` as a RunnerError (JobConflict for a 409)."""
    try:
        body = response.json()
        error = body.get("error", {}) if isinstance(body, dict) else {}
    except ValueError:
        body, error = {}, {}
    cls = JobConflict if response.status_code == 409 else RunnerError
    exc = cls(
        response.status_code,
        str(error.get("type", "http_error")),
        str(error.get("message", response.text[:300])),
        body if isinstance(body, dict) else {},
    )
    retry_after = response.headers.get("retry-after", "")
    exc.retry_after = float(retry_after) if retry_after.replace(".", "", 1).isdigit() else None
    return exc
