from model_runner.db.server import resolve_database_url
from model_runner.settings import Settings


def test_external_database_url_is_used_as_is(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db.example:5432/tp")
    assert resolve_database_url(Settings()) == "postgresql://u:p@db.example:5432/tp"


def test_embedded_server_starts_under_home_and_is_reused(tmp_path, monkeypatch):
    import psycopg

    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("TWEETPULSE_DATABASE_URL", raising=False)
    settings = Settings(home=tmp_path / "home")
    url = resolve_database_url(settings)
    assert (tmp_path / "home" / "pgdata" / "PG_VERSION").exists()
    assert resolve_database_url(settings) == url
    with psycopg.connect(url) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        assert conn.execute("SELECT '[1,2]'::vector <-> '[1,3]'::vector").fetchone()[0] == 1.0
