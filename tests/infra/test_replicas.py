"""Two serving replicas and one train process behind HAProxy, as the local stack starts them
(``TWEETPULSE_STACK_REPLICAS=2``): 8 clients send through the balancer for 60 s while one replica is
SIGKILLed and restarted and a retrain promotes a new champion.

Real processes (``model-runner serve --role ...``) started by the stack's own code, Debian's HAProxy,
real Postgres (the queue, LISTEN/NOTIFY), a shared MLflow store.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from model_runner.settings_doc import _env_names
from tests.service.conftest import (
    ADMIN_TOKEN,
    READ_TOKEN,
    make_settings,
    new_database,
    train_champion,
)

REPO = Path(__file__).resolve().parents[2]
STACK = REPO / "infra" / "stack"
HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
pytestmark = pytest.mark.skipif(
    HAPROXY is None and not os.environ.get("TWEETPULSE_REQUIRE_HAPROXY"),
    reason="needs Debian's haproxy (make haproxy)",
)

CLIENTS = 8
LOAD_S = 60.0
# the retrain is queued first, the kill and restart happen while it trains; the load goes on for
# LOAD_S, or until every replica serves the new version and a few seconds more
TRAIN_AT_S, KILL_AT_S, RESTART_AT_S = 3.0, 10.0, 14.0
POLL_BOUND_S = 5.0  # reload_poll_s of the replicas: the bound on converging without a NOTIFY


def _env_of(settings) -> dict[str, str]:
    """The settings as the environment a `model-runner` process reads them from."""
    env = {}
    for name, field in type(settings).model_fields.items():
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, dict | list):
            value = json.dumps(value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[_env_names(name, field)[0]] = str(value)
    return env


def _base_port() -> int:
    """A runner port whose +9..+12 neighbours (stats, train, replicas) are free too."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base > 60000:
            continue
        ports = [base, *range(base + 9, base + 13)]
        try:
            socks = []
            for p in ports:
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


@pytest.fixture
def stack_modules():
    sys.path.insert(0, str(STACK))
    try:
        import balancer
        import config
        import procs
        import services

        yield config, services, procs, balancer
    finally:
        sys.path.remove(str(STACK))


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _ready(url: str) -> dict | None:
    try:
        r = httpx.get(f"{url}/health/ready", timeout=3)
    except httpx.HTTPError:
        return None
    return r.json() if r.status_code == 200 else None


def _until(check, timeout: float, what: str, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_replicas_behind_haproxy_lose_no_request_to_a_kill_or_a_promotion(
    stack_modules, tmp_path, pg_server, tiny_bert
):
    config, services, procs, balancer = stack_modules
    base = _base_port()
    settings = make_settings(
        tmp_path / "home",
        new_database(pg_server),
        tiny_bert,
        reload_poll_s=POLL_BOUND_S,
        job_claim_poll_s=0.5,
        job_lease_s=8,
        tasks="sentiment",
    )
    train_champion(settings)
    cfg = config.StackConfig(TWEETPULSE_HOME=str(tmp_path / "stack"), TWEETPULSE_PORT=base, replicas=2)
    env = _env_of(settings)
    tiers = services.model_runners(cfg, env)
    assert set(tiers) == {"model-runner-1", "model-runner-2", "model-runner-train", "balancer"}
    stack_id = f"replica-test-{base}"
    url = f"http://127.0.0.1:{base}"
    replica_urls = {
        name: f"http://127.0.0.1:{balancer.replica_port(cfg, i)}"
        for i, name in enumerate(balancer.replica_names(cfg), start=1)
    }
    train_url = f"http://127.0.0.1:{balancer.train_port(cfg)}"
    try:
        for service in tiers.values():
            procs.start(service.proc, cfg.run_dir, cfg.log_dir, stack_id)
        for name, replica in replica_urls.items():
            _until(lambda r=replica: _ready(r), 120, f"{name} to serve")
        assert _ready(train_url)["role"] == "train"
        both_up = {"model-runner-1": "UP", "model-runner-2": "UP"}
        _until(lambda: balancer.backend_states(cfg) == both_up, 30, "both replicas UP at the balancer")

        failures: list[str] = []
        versions: Counter = Counter()
        answered_by: Counter = Counter()
        stop = threading.Event()

        def client(i: int) -> None:
            texts = [f"client {i} says the service is great", "meh", "this is awful"]
            with httpx.Client(
                base_url=url, timeout=30, headers={"Authorization": f"Bearer {READ_TOKEN}"}
            ) as c:
                while not stop.is_set():
                    try:
                        r = c.post("/inference", json={"messages": texts})
                    except httpx.HTTPError as exc:
                        failures.append(f"{time.monotonic() - started:.2f}s {type(exc).__name__}: {exc}")
                        continue
                    if r.status_code != 200:
                        failures.append(f"{time.monotonic() - started:.2f}s {r.status_code}: {r.text[:200]}")
                        continue
                    versions[r.json()["model"]["version"]] += 1
                    answered_by[r.headers.get("x-tweetpulse-replica")] += 1

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
        started = time.monotonic()
        for t in threads:
            t.start()

        def at(seconds: float) -> None:
            time.sleep(max(0.0, started + seconds - time.monotonic()))

        at(TRAIN_AT_S)
        admin = httpx.Client(base_url=url, timeout=30, headers=_auth(ADMIN_TOKEN))
        # the champion's own data: the new version is as good, so the gate promotes it
        r = admin.post("/train", json={"adapters": ["linear"]})
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        at(KILL_AT_S)
        victim = procs.read_pid(cfg.run_dir, "model-runner-1")
        os.killpg(victim, signal.SIGKILL)
        at(RESTART_AT_S)
        procs.start(tiers["model-runner-1"].proc, cfg.run_dir, cfg.log_dir, stack_id)
        _until(lambda: _ready(replica_urls["model-runner-1"]), 120, "the restarted replica to serve")
        job = _until(
            lambda: (b := admin.get(f"/train/{job_id}").json())["state"] in ("succeeded", "failed") and b,
            300,
            "the retrain to end",
        )
        promoted_at = time.monotonic()
        assert job["state"] == "succeeded" and job["model_version"] == "2" and job["promoted"], job
        # every replica serves the new version within the bound (NOTIFY, else the registry poll)
        for name, replica in replica_urls.items():
            _until(
                lambda r=replica: (_ready(r) or {}).get("models", {}).get("sentiment", "").endswith("/2"),
                POLL_BOUND_S + 5,
                f"{name} to serve version 2",
            )
        converged_s = time.monotonic() - promoted_at
        jobs = admin.get("/train").json()["jobs"]
        admin.close()
        at(max(LOAD_S, time.monotonic() - started + 5))
        stop.set()
        for t in threads:
            t.join(timeout=60)

        total, elapsed = sum(versions.values()), time.monotonic() - started
        print(
            f"\n{total} requests in {elapsed:.0f}s by {CLIENTS} clients; failed {len(failures)};"
            f" versions {dict(versions)}; replicas {dict(answered_by)}; converged in {converged_s:.1f}s"
        )
        assert failures == [], failures[:5]
        assert total > 100 and versions["1"] and versions["2"]
        # both replicas answered, the restarted one too (a new pid); the train process never did
        assert len(answered_by) >= 3, answered_by
        train_pid = procs.read_pid(cfg.run_dir, "model-runner-train")
        assert train_pid and not any(str(r).endswith(f":{train_pid}") for r in answered_by)
        # one job, run once, by the train process
        assert [j["job_id"] for j in jobs] == [job_id], jobs
        worker_logs = list((settings.resolved_home() / "logs" / "jobs").glob("*.log"))
        assert [p.stem for p in worker_logs] == [job_id]
        assert balancer.backend_states(cfg) == both_up
    finally:
        for name in ("balancer", "model-runner-1", "model-runner-2", "model-runner-train"):
            pid = procs.read_pid(cfg.run_dir, name)
            if pid:
                procs.stop_group(pid, timeout=10)
        procs.kill_marked(stack_id)
    assert procs.marked_processes(stack_id) == []
