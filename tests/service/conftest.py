"""The ModelRunner under real uvicorn on loopback, with real Postgres, a real MLflow store and a champion.

``service_settings`` (one per module) trains a tiny champion once; ``live`` starts the app for one test.
Tests that change the registry or the jobs table take ``fresh_settings`` (their own database and store).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
import uvicorn

from model_runner.settings import Settings
from tests.training.conftest import make_rows, write_jsonl

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
READ_TOKEN = "read-token-for-tests-9876543210"


def new_database(pg_server) -> str:
    name = f"s_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return pg_server.get_uri(name)


def make_dataset(folder: Path, seed: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "train.jsonl", make_rows(40, seed=seed))
    write_jsonl(folder / "validation.jsonl", make_rows(15, seed=seed + 1))
    return folder


def make_settings(home: Path, database_url: str, tiny_bert: Path, **overrides) -> Settings:
    values = dict(
        home=home,
        database_url=database_url,
        encoder_id=str(tiny_bert),
        encoder_max_length=32,
        cv_folds=2,
        cv_workers=1,
        bootstrap_samples=200,
        adapters="linear",
        device="cpu",
        api_token=ADMIN_TOKEN,
        inference_token=READ_TOKEN,
        tasks="sentiment,emotion",
        batch_max_wait_ms=2,
        task_overrides={"sentiment": {"data": str(make_dataset(home / "data"))}},
        inference_threads=1,
        job_poll_s=0.2,
    )
    values.update(overrides)
    return Settings(**values)


def train_champion(settings: Settings, **kwargs):
    from model_runner.tasks import get_task
    from model_runner.training.run import run_training
    from model_runner.wiring import Components

    return run_training(Components(settings), get_task("sentiment", settings), **kwargs)


@pytest.fixture(scope="module")
def service_settings(tmp_path_factory, pg_server, tiny_bert) -> Settings:
    """Settings whose registry holds one sentiment champion (version 1). Read-only for tests."""
    home = tmp_path_factory.mktemp("svc")
    settings = make_settings(home, new_database(pg_server), tiny_bert)
    train_champion(settings)
    return settings


@pytest.fixture
def fresh_settings(tmp_path, pg_server, tiny_bert) -> Settings:
    """Like ``service_settings`` but private to one test, which may change it."""
    settings = make_settings(tmp_path / "home", new_database(pg_server), tiny_bert)
    train_champion(settings)
    return settings


class LiveServer:
    def __init__(self, app, server: uvicorn.Server, thread: threading.Thread, url: str):
        self.app, self.server, self.thread, self.url = app, server, thread, url

    @property
    def state(self):
        return self.app.state.runner

    def client(self, *, token: str | None = READ_TOKEN, **kwargs) -> httpx.Client:
        """A client that reads with the read token (``token=None``: anonymous; per-request headers
        such as ``admin()`` override it)."""
        headers = dict(kwargs.pop("headers", {}))
        if token:
            headers.setdefault("Authorization", f"Bearer {token}")
        return httpx.Client(base_url=self.url, timeout=30, headers=headers, **kwargs)

    def admin(self) -> dict:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@contextmanager
def serve(settings: Settings, *, wait_ready: bool = True) -> Iterator[LiveServer]:
    """Run ``create_app(settings)`` under uvicorn on a free loopback port, in a thread."""
    from model_runner.service.app import create_app

    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    live = LiveServer(app, server, thread, f"http://127.0.0.1:{port}")
    try:
        if wait_ready:
            wait_until_ready(live)
        yield live
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def wait_until_ready(live: LiveServer, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with live.client() as c:
        while time.monotonic() < deadline:
            if c.get("/health/ready").status_code == 200:
                return
            time.sleep(0.05)
    raise RuntimeError(f"service not ready: {httpx.get(live.url + '/health/ready').text}")


@pytest.fixture(scope="module")
def live(service_settings) -> Iterator[LiveServer]:
    with serve(service_settings) as server:
        yield server


def wait_for_job(client: httpx.Client, job_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/train/{job_id}").json()
        if body["state"] in ("succeeded", "failed", "cancelled") and (
            body["state"] != "succeeded" or body.get("reload") is not None
        ):
            return body
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {body}")
