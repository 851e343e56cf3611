"""Where the database lives: an external Postgres from ``DATABASE_URL``, or an embedded pgserver.

pgserver ships Postgres 16 with pgvector inside a wheel and talks over a Unix socket, so a fresh
clone gets a real database with no Docker and no system packages. The data folder is reused across
runs; pgserver itself reference-counts the processes that use it and stops the server after the last.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from model_runner.settings import Settings

log = logging.getLogger(__name__)

_embedded: dict[Path, Any] = {}


def embedded_pgdata(settings: Settings) -> Path:
    return settings.resolved_home() / "pgdata"


def start_embedded(pgdata: Path) -> str:
    """Start (or attach to) the embedded server for ``pgdata`` and return its URI."""
    import pgserver  # heavy import, only needed for the embedded stack

    pgdata = pgdata.resolve()
    if pgdata not in _embedded:
        pgdata.mkdir(parents=True, exist_ok=True)
        log.info("starting embedded Postgres in %s", pgdata)
        _embedded[pgdata] = pgserver.get_server(pgdata, cleanup_mode="stop")
    return _embedded[pgdata].get_uri()


def resolve_database_url(settings: Settings) -> str:
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return start_embedded(embedded_pgdata(settings))


def redact(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    try:
        parts = conninfo_to_dict(url)
    except Exception:
        return "<unparseable database url>"
    if parts.get("password"):
        parts["password"] = "***"
    return make_conninfo(**parts)
