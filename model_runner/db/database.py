"""Connections to the tweetpulse database with pgvector types registered and the schema migrated."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from pgvector.psycopg import register_vector

from model_runner.db.migrate import migrate
from model_runner.db.server import redact, resolve_database_url
from model_runner.settings import Settings

log = logging.getLogger(__name__)


class Database:
    """A database URL plus the guarantee that the schema is current before the first use."""

    def __init__(self, url: str):
        self.url = url
        self._migrated = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(resolve_database_url(settings))

    def __repr__(self) -> str:
        return f"Database({redact(self.url)})"

    def ensure_schema(self) -> list[int]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            applied = migrate(conn)
        self._migrated = True
        return applied

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        """A connection (commits on success, rolls back on error) that understands ``vector``."""
        if not self._migrated:
            self.ensure_schema()
        with psycopg.connect(self.url) as conn:
            register_vector(conn)
            yield conn

    def ping(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False
