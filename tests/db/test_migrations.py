import psycopg
import pytest

from model_runner.db import Database
from model_runner.db.migrate import available_migrations, migrate


def test_migrations_apply_once_and_are_idempotent(database_url):
    db = Database(database_url)
    first = db.ensure_schema()
    assert first == [m.version for m in available_migrations()]
    assert db.ensure_schema() == []  # second run: nothing to do, no error
    with psycopg.connect(database_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
    assert versions == first
    assert {"embeddings", "encoders", "labelled_examples", "tweets", "predictions", "training_jobs"} <= tables


def test_concurrent_migrators_apply_each_file_once(database_url):
    from concurrent.futures import ThreadPoolExecutor

    def run(_):
        with psycopg.connect(database_url, autocommit=True) as conn:
            return migrate(conn)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, range(4)))
    applied = [v for r in results for v in r]
    assert sorted(applied) == [m.version for m in available_migrations()]


def test_only_one_active_training_job(db):
    import uuid

    with db.connect() as conn:
        conn.execute("INSERT INTO training_jobs (id, state) VALUES (%s, 'running')", (uuid.uuid4(),))
    with pytest.raises(psycopg.errors.UniqueViolation), db.connect() as conn:
        conn.execute("INSERT INTO training_jobs (id, state) VALUES (%s, 'queued')", (uuid.uuid4(),))


def test_database_url_is_redacted_in_repr():
    db = Database("postgresql://user:s3cret@localhost:5432/x")
    assert "s3cret" not in repr(db)
