"""Connections to the tweetpulse database with pgvector types registered and the schema migrated.

Connections come from a pool (psycopg_pool) with a connect timeout and a statement timeout, so a
database that is slow or gone costs a bounded wait and an ``OperationalError`` (which the service
answers with 503 and ``Retry-After``), never a hung request. The pool belongs to the process that made
it: a forked child (a CV worker) makes its own on first use.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool

from model_runner.db.migrate import migrate
from model_runner.db.server import redact, resolve_database_url
from model_runner.settings import Settings

log = logging.getLogger(__name__)


class Database:
    """A database URL plus the guarantee that the schema is current before the first use."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout_s: float = 5.0,
        statement_timeout_s: float = 0.0,
        pool_size: int = 0,
    ):
        self.url = url
        self.connect_timeout_s = connect_timeout_s
        self.statement_timeout_s = statement_timeout_s
        self.pool_size = pool_size  # 0 = a connection per use (CLI, worker); the service pools
        self._migrated = False
        self._pool: ConnectionPool | None = None
        self._pool_pid: int | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, pooled: bool = False) -> Database:
        return cls(
            resolve_database_url(settings),
            connect_timeout_s=settings.db_connect_timeout_s,
            statement_timeout_s=settings.db_statement_timeout_s,
            pool_size=settings.db_pool_size if pooled else 0,
        )

    def __repr__(self) -> str:
        return f"Database({redact(self.url)})"

    def _connect_kwargs(self) -> dict:
        kwargs: dict = {"connect_timeout": max(1, round(self.connect_timeout_s))}
        if self.statement_timeout_s:
            kwargs["options"] = f"-c statement_timeout={int(self.statement_timeout_s * 1000)}"
        return kwargs

    def ensure_schema(self) -> list[int]:
        with psycopg.connect(self.url, autocommit=True, **self._connect_kwargs()) as conn:
            applied = migrate(conn)
        self._migrated = True
        return applied

    def _get_pool(self) -> ConnectionPool:
        pid = os.getpid()
        with self._lock:
            if self._pool is None or self._pool_pid != pid:
                # a pool inherited through fork has no worker threads here: make a new one
                self._pool = ConnectionPool(
                    self.url,
                    min_size=0,
                    max_size=self.pool_size,
                    kwargs=self._connect_kwargs(),
                    configure=register_vector,
                    check=ConnectionPool.check_connection,
                    timeout=self.connect_timeout_s * 2,
                    max_idle=60,
                    open=False,
                    name="tweetpulse",
                )
                self._pool.open(wait=False)
                self._pool_pid = pid
            return self._pool

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        """A pooled connection (commits on success, rolls back on error) that understands ``vector``."""
        if not self._migrated:
            self.ensure_schema()
        if not self.pool_size:
            with psycopg.connect(self.url, **self._connect_kwargs()) as conn:
                register_vector(conn)
                yield conn
            return
        with self._get_pool().connection() as conn:
            yield conn

    def ping(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def close(self) -> None:
        with self._lock:
            if self._pool is not None and self._pool_pid == os.getpid():
                self._pool.close(timeout=5)
            self._pool = None
