"""Roles past one machine: serving replicas queue jobs, train processes claim them with a lease.

Real Postgres (SKIP LOCKED, LISTEN/NOTIFY), real MLflow store, uvicorn on loopback, real worker
processes; one train process runs as its own OS process so that it can be SIGKILLed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import psutil
import pytest

from model_runner.db import Database
from model_runner.jobs.train_worker import dump_settings
from model_runner.store.jobs import JobStore
from tests.service.conftest import READ_TOKEN, serve

PAUSE = "TWEETPULSE_TEST_PAUSE_AT_STAGE"


def _store(settings) -> JobStore:
    return JobStore(Database(settings.database_url.get_secret_value()), lease_s=settings.job_lease_s)


def _workers(job_id: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "model_runner.jobs.train_worker" in cmd and job_id in cmd:
            found.append(proc)
    return found


def _until(check, timeout: float, what: str, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


# --- the queue in Postgres --------------------------------------------------------------------------
def test_two_claimers_racing_for_one_queued_job_one_gets_it(fresh_settings):
    store = _store(fresh_settings)
    job = store.create("sentiment", {"adapters": ["linear"]}, queue_timeout_s=600)
    assert store.queue_depth() == 1
    barrier = threading.Barrier(4)
    won: list = []

    def claim(i: int) -> None:
        barrier.wait()
        got = store.claim_next(f"token-{i}", host="h", claimed_by=f"h:{i}:0")
        if got is not None:
            won.append((i, got.id))

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and won[0][1] == job.id, won
    row = store.get(job.id)
    assert row.lease_token == f"token-{won[0][0]}" and row.claimed_by == f"h:{won[0][0]}:0"
    assert store.queue_depth() == 0 and store.claim_next("late", host="h", claimed_by="h:9:0") is None
    # the worker of the winner claims it with the same token; anyone else's token is refused
    assert not store.claim(job.id, "token-x", pid=1, host="h", started_at=None)
    assert store.claim(job.id, row.lease_token, pid=1, host="h", started_at=None)


def test_a_queued_job_no_train_process_claims_fails_after_its_queue_timeout(fresh_settings):
    store = _store(fresh_settings)
    job = store.create("sentiment", {}, queue_timeout_s=0.5)
    assert store.fail_expired() == []  # still within its queue timeout
    time.sleep(1.0)
    assert store.fail_expired() == [job.id]
    row = store.get(job.id)
    assert row.state == "failed" and "no train process claimed" in row.error


# --- serve + train ----------------------------------------------------------------------------------
def test_a_serving_replica_queues_a_train_process_runs_it_and_the_replica_converges(fresh_settings):
    # no registry poll on the replica: it must learn of the new champion through NOTIFY
    replica_settings = fresh_settings.model_copy(update={"role": "serve", "reload_poll_s": 0})
    train_settings = fresh_settings.model_copy(update={"role": "train", "job_claim_poll_s": 60})
    with serve(replica_settings) as replica, replica.client() as c:
        assert c.get("/model").json()["version"] == "1"
        ready = c.get("/health/ready").json()
        assert ready["role"] == "serve" and ready["replica"].endswith(f":{os.getpid()}")
        r = c.post("/train", json={"adapters": ["linear"]}, headers=replica.admin())
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        time.sleep(1.5)
        job = c.get(f"/train/{job_id}").json()
        assert job["state"] == "queued" and not replica.state.jobs._procs and not _workers(job_id)
        assert "tweetpulse_training_queue_depth 1.0" in c.get("/metrics").text
        # a second submission while one waits: 409 names the queued job
        r = c.post("/train", json={"adapters": ["linear"]}, headers=replica.admin())
        assert r.status_code == 409 and r.json()["error"]["job_id"] == job_id

        with serve(train_settings, wait_ready=False) as trainer, trainer.client() as t:
            _until(lambda: t.get("/health/ready").status_code == 200, 60, "the train process is ready")
            ready = t.get("/health/ready").json()
            assert ready["role"] == "train" and ready["models"] == {"sentiment": None, "emotion": None}
            # a train process serves no model
            r = t.post("/inference", json={"messages": ["hi"]})
            assert r.status_code == 503
            job = _until(
                lambda: (b := c.get(f"/train/{job_id}").json())["state"] in ("succeeded", "failed") and b,
                180,
                "the job to end",
            )
            assert job["state"] == "succeeded", job
            assert job["model_version"] == "2"
            # the replica reloads on the train process's NOTIFY, with no poll and no reconcile of its own
            _until(lambda: c.get("/model").json()["version"] == "2", 30, "the replica to serve version 2")
            r = c.post("/inference", json={"messages": ["good day"]})
            assert r.json()["model"]["version"] == "2" and r.headers["x-tweetpulse-replica"]


_TRAIN_PROCESS = """
import sys
from model_runner.jobs.train_worker import load_settings
from model_runner.service.app import create_app
from model_runner.service.server import run
settings = load_settings(sys.stdin.read())
run(create_app(settings), settings, host="127.0.0.1", port=settings.port)
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_train_processes_one_job_the_killed_claimer_fails_by_lease_never_two_trainers(
    fresh_settings, monkeypatch
):
    settings = fresh_settings.model_copy(
        update={"role": "train", "job_lease_s": 4, "job_sweep_s": 0.5, "job_claim_poll_s": 0.5}
    )
    port = _free_port()
    env = {**os.environ, PAUSE: "cv:60"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _TRAIN_PROCESS],
        stdin=subprocess.PIPE,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        proc.stdin.write(dump_settings(settings.model_copy(update={"port": port})).encode())
        proc.stdin.close()
        url = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {READ_TOKEN}"}

        def ready() -> bool:
            try:
                return httpx.get(f"{url}/health/ready", headers=headers, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        _until(ready, 90, "train process A")
        store = _store(settings)
        job = store.create("sentiment", {"adapters": ["linear"]}, queue_timeout_s=600)
        row = _until(
            lambda: (r := store.get(job.id)).stage == "cv" and r, 90, "process A to claim and run the job"
        )
        assert row.claimed_by and row.claimed_by.split(":")[1] == str(proc.pid)
        (worker,) = _workers(job.id)
        monkeypatch.setenv(PAUSE, "cv:60")
        with serve(settings, wait_ready=False) as other, other.client() as c:
            _until(lambda: c.get("/health/ready").status_code == 200, 60, "train process B")
            # B leaves the job to its live claimer: no adoption, no second worker
            time.sleep(1.5)
            assert not other.state.jobs._procs and [p.pid for p in _workers(job.id)] == [worker.pid]
            assert store.get(job.id).state == "running"
            # the node of A is lost: A and its worker die at once
            os.killpg(proc.pid, signal.SIGKILL)
            os.killpg(worker.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            ended = _until(
                lambda: (r := store.get(job.id)).state != "running" and r, 30, "the lease to expire"
            )
            assert ended.state == "failed" and "stopped renewing its lease" in ended.error, ended.error
            assert not other.state.jobs._procs and _workers(job.id) == []
            # B goes on claiming: the next queued job runs on B, once
            monkeypatch.delenv(PAUSE)
            second = store.create("sentiment", {"adapters": ["linear"]}, queue_timeout_s=600)
            done = _until(
                lambda: (r := store.get(second.id)).state in ("succeeded", "failed") and r, 180, "job 2"
            )
            assert done.state == "succeeded", done.error
            assert done.claimed_by.split(":")[1] == str(os.getpid())
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.parametrize("role", ["serve", "train", "all"])
def test_the_cli_takes_the_role(role, monkeypatch):
    from model_runner import cli

    seen = {}
    monkeypatch.setattr("model_runner.service.server.run", lambda app, s, **kw: seen.update(role=s.role))
    monkeypatch.setattr("model_runner.service.app.create_app", lambda s: object())
    assert cli.main(["serve", "--role", role, "--port", "8123"]) == 0
    assert seen["role"] == role
