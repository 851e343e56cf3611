"""Training jobs under faults: database outage, failures after the alias moved, a crashed service, dead
workers, hostile training inputs. Real Postgres, MLflow store, uvicorn on loopback, worker processes."""

from __future__ import annotations

import logging
import time
import uuid

import psutil
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from pydantic import SecretStr

from model_runner.data import DataError
from model_runner.db import Database
from model_runner.jobs.train_worker import safe_error
from model_runner.store.jobs import JobStore
from tests.hub.fake_hub import FakeHub
from tests.service.conftest import make_dataset, serve

HUB_TOKEN = "hf_fake_token_for_tests_123456"
PAUSE = "TWEETPULSE_TEST_PAUSE_AT_STAGE"
FAULT = "TWEETPULSE_TEST_FAULT_AFTER_PROMOTE"


def _store(settings) -> JobStore:
    return JobStore(Database(settings.database_url.get_secret_value()), lease_s=settings.job_lease_s)


def _settled(client, job_id: str, timeout: float = 120) -> dict:
    """The job ended and the service reconciled it (reload, served version recorded)."""
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        r = client.get(f"/train/{job_id}")
        if r.status_code == 200:
            body = r.json()
            if body["settled"]:
                return body
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not settle: {body}")


def _wait_stage(client, job_id: str, stage: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        body = client.get(f"/train/{job_id}").json()
        if body["stage"] == stage:
            return body
        assert body["state"] in ("queued", "running"), body
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached stage {stage}: {body}")


def _train(server, client, settings, seed: int = 5) -> str:
    data = str(make_dataset(settings.resolved_home() / f"v{seed}", seed=seed))
    r = client.post(
        "/train", json={"dataset": data, "adapters": ["linear"], "folds": 2}, headers=server.admin()
    )
    assert r.status_code == 202, r.text
    return r.json()["job_id"]


def _workers(job_id: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmd = proc.info["cmdline"] or []
        if "model_runner.jobs.train_worker" in cmd and job_id in cmd and proc.info["status"] != "zombie":
            found.append(proc)
    return found


# --- 1. the database goes away during a job ---
def _allow_connections(settings, pg_server, allow: bool) -> None:
    name = conninfo_to_dict(settings.database_url.get_secret_value())["dbname"]
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS {'true' if allow else 'false'}")
        if not allow:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s"
                " AND pid <> pg_backend_pid()",
                (name,),
            )


def test_postgres_unreachable_for_5s_during_a_job_the_job_ends_reloads_and_the_next_is_accepted(
    fresh_settings, pg_server, monkeypatch, caplog
):
    monkeypatch.setenv(PAUSE, "cv:10")  # the worker needs no database in this window
    caplog.set_level(logging.WARNING, logger="model_runner.service.supervisor")
    # short connection timeouts, so that the watcher meets errors within the outage instead of waiting
    settings = fresh_settings.model_copy(update={"db_connect_timeout_s": 1.0})
    with serve(settings) as server, server.client() as c:
        job_id = _train(server, c, settings)
        _wait_stage(c, job_id, "cv")
        _allow_connections(settings, pg_server, False)
        try:
            with pytest.raises(psycopg.OperationalError):
                psycopg.connect(fresh_settings.database_url.get_secret_value(), connect_timeout=3)
            time.sleep(5)
        finally:
            _allow_connections(fresh_settings, pg_server, True)
        job = _settled(c, job_id)
        assert job["state"] == "succeeded", job
        assert job["promoted"] is True and job["reload"]["reloaded"] is True
        assert job["served_version"] == job["champion_version"] == "2"
        assert c.get("/model").json()["version"] == "2"
        assert any(f"job {job_id}: cannot read the job" in r.getMessage() for r in caplog.records)
        r = c.post("/train", json={"adapters": ["linear"]}, headers=server.admin())
        assert r.status_code == 202, r.text


# --- 2. failures after the champion alias moved ---
@pytest.fixture
def hub(monkeypatch):
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    # the service process retries the push itself: its huggingface_hub read the variable at import
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    fake = FakeHub(HUB_TOKEN).start()
    yield fake
    fake.stop()


@pytest.mark.parametrize("fault", ["raise", "sigterm", "sigkill"])
def test_a_failure_after_the_alias_moved_still_serves_and_pushes_the_champion(
    fresh_settings, hub, monkeypatch, fault
):
    settings = fresh_settings.model_copy(
        update={
            "hub_token": SecretStr(HUB_TOKEN),
            "hub_repo_id": "acme/tweetpulse-{task}",
            "hub_endpoint": hub.url,
        }
    )
    monkeypatch.setenv(FAULT, fault)
    with serve(settings) as server, server.client() as c:
        job_id = _train(server, c, settings)
        job = _settled(c, job_id)
        # the job failed after the promotion, and says what really happened
        assert job["state"] == "failed", job
        assert job["error"], job
        if fault == "sigterm":
            assert "SIGTERM" in job["error"]
        assert job["promoted"] is True and job["model_version"] == "2"
        assert job["champion_version"] == job["served_version"] == "2"
        assert c.get("/model").json()["version"] == "2"
        # the Hub push the worker never made was retried by the service
        assert job["hub"] is None, job["hub"]  # the worker never got to push
        assert job["hub_retry"]["pushed"] is True and job["hub_retry"]["version"] == "2", job
        files = hub.repos["acme/tweetpulse-sentiment"].files
        assert {"model.onnx", "tweetpulse/model.safetensors"} <= set(files)
        # and the next job is accepted
        assert c.post("/train", json={"adapters": ["linear"]}, headers=server.admin()).status_code == 202


# --- 3. the service dies mid-training ---
def _abandon(server) -> None:
    """Make the next shutdown behave like a crash: the worker is left running, nothing is recorded."""

    async def crash() -> None:
        return None

    server.state.jobs.shutdown = crash


def test_a_restarted_service_kills_the_orphan_worker_which_then_cannot_write_the_job(
    fresh_settings, monkeypatch
):
    settings = fresh_settings.model_copy(update={"job_recover_mode": "kill"})
    monkeypatch.setenv(PAUSE, "cv:30")
    with serve(settings) as first, first.client() as c:
        job_id = _train(first, c, settings)
        _wait_stage(c, job_id, "cv")
        _abandon(first)
    store = _store(settings)
    row = store.get(job_id)
    assert row.state == "running" and row.lease_token and row.worker_started_at
    (orphan,) = _workers(job_id)
    assert orphan.pid == row.worker_pid
    with serve(settings) as second, second.client() as c:
        job = c.get(f"/train/{job_id}").json()
        assert job["state"] == "failed" and job["error"].startswith("interrupted"), job
        # the orphan's process group got SIGTERM (then SIGKILL after the grace): no second trainer
        deadline = time.monotonic() + settings.train_worker_stop_grace_s + 10
        while _workers(job_id) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _workers(job_id) == [], second.state.jobs.log_path(job_id).read_text()[-3000:]
        # a worker holding the old lease changes nothing
        assert store.update(job_id, token=row.lease_token, state="succeeded", stage="done") is False
        assert store.merge_result(job_id, {"promoted": True}, token=row.lease_token) is False
        assert store.heartbeat(job_id, row.lease_token) is False
        assert store.get(job_id).state == "failed"
        assert c.post("/train", json={"adapters": ["linear"]}, headers=second.admin()).status_code == 202
        assert c.get("/model").json()["version"] == "1"


def test_a_restarted_service_adopts_the_surviving_worker_and_the_job_goes_on(fresh_settings, monkeypatch):
    monkeypatch.setenv(PAUSE, "cv:8")
    with serve(fresh_settings) as first, first.client() as c:
        job_id = _train(first, c, fresh_settings)
        _wait_stage(c, job_id, "cv")
        _abandon(first)
    (orphan,) = _workers(job_id)
    with serve(fresh_settings) as second, second.client() as c:
        assert set(second.state.jobs._procs) == {job_id}
        assert second.state.jobs._procs[job_id].pid == orphan.pid and second.state.jobs.worker_running
        # still one trainer: the adopted job is active, with a live lease
        r = c.post("/train", json={"adapters": ["linear"]}, headers=second.admin())
        assert r.status_code == 409 and r.json()["error"]["job_id"] == job_id
        job = _settled(c, job_id)
        assert job["state"] == "succeeded", job
        assert job["served_version"] == "2" and job["reload"]["reloaded"] is True
        assert c.get("/model").json()["version"] == "2"
        assert len(_workers(job_id)) == 0


# --- 4. leases ---
def _remote_running_job(store: JobStore, lease: str) -> str:
    job = store.create("sentiment", {"adapters": ["linear"]})
    with store.db.connect() as conn:
        conn.execute(
            "UPDATE training_jobs SET state = 'running', stage = 'cv', worker_host = 'other-host',"
            " worker_pid = 4242, lease_token = 'remote', heartbeat_at = now(),"
            " lease_expires_at = now() + %s::interval WHERE id = %s",
            (lease, uuid.UUID(job.id)),
        )
    return job.id


def test_a_job_whose_lease_expired_does_not_block_a_new_one(fresh_settings):
    store = _store(fresh_settings)
    remote = _remote_running_job(store, "10 minutes")
    with serve(fresh_settings) as server, server.client() as c:
        # another host's job with a live lease survives our start-up and blocks a second trainer
        assert c.get(f"/train/{remote}").json()["state"] == "running"
        r = c.post("/train", json={"adapters": ["linear"]}, headers=server.admin())
        assert r.status_code == 409 and r.json()["error"]["job_id"] == remote
        # its worker stops heartbeating: the next submission fails it and starts
        with store.db.connect() as conn:
            conn.execute(
                "UPDATE training_jobs SET lease_expires_at = now() - interval '1 second' WHERE id = %s",
                (uuid.UUID(remote),),
            )
        r = c.post("/train", json={"adapters": ["linear"]}, headers=server.admin())
        assert r.status_code == 202, r.text
        old = c.get(f"/train/{remote}").json()
        assert old["state"] == "failed" and "stopped renewing its lease" in old["error"], old
        # the dead worker, were it to come back, changes nothing
        assert store.update(remote, token="remote", state="succeeded") is False


# --- 5. bounded training inputs ---
def test_datasets_outside_the_allowed_roots_and_repeated_adapters_are_refused(live, tmp_path):
    home = live.state.settings.resolved_home()
    outside = make_dataset(tmp_path / "elsewhere")
    (home / "link").symlink_to(outside, target_is_directory=True)
    sneaky = f"{home}/data/../../{tmp_path.name}/elsewhere"
    with live.client(headers=live.admin()) as c:
        for dataset in (str(outside), str(home / "link"), sneaky, "/etc/passwd", "/etc"):
            r = c.post("/train", json={"dataset": dataset})
            assert r.status_code == 422, (dataset, r.text)
            assert "dataset" in r.json()["error"]["message"]
        r = c.post("/train", json={"adapters": ["linear", "mlp", "linear"]})
        assert r.status_code == 422 and "repeated: linear" in r.json()["error"]["message"]
        assert c.get("/train").json()["jobs"] == []


def test_job_errors_carry_no_file_contents_or_label_values():
    exc = DataError("'/data/secret.jsonl' has fewer than 2 classes after cleaning: ['very-private-label']")
    text = safe_error(exc, "/data/secret.jsonl")
    assert text.startswith("DataError: ") and "fewer than 2 classes" in text and "secret.jsonl" in text
    assert "very-private-label" not in text
    exc = ValueError('y contains previously unseen labels: {"joy": 3} for text "my card number is 1234"')
    text = safe_error(exc)
    assert text.startswith("ValueError: y contains previously unseen labels")
    assert "joy" not in text and "1234" not in text
