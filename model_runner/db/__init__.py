"""Postgres + pgvector access: where the server is, the schema, and connections."""

from model_runner.db.database import Database

__all__ = ["Database"]
