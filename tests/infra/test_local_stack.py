"""End to end: what `make demo` drives, with a tiny model and a small dataset.

Every process of the local stack comes up healthy, a retrain triggered through Airflow's REST API
promotes a champion, the inspector stores classified tweets, a forced failure puts one mail in the
sink, and `down` leaves no process behind. Runs the real stack script in a subprocess, on free ports.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import pytest

from tests.airflow.runner_fixture import rows, write

REPO = Path(__file__).resolve().parents[2]
STACK = REPO / "infra" / "stack"
pytestmark = pytest.mark.skipif(
    not (REPO / ".venv-airflow" / "bin" / "airflow").exists(), reason="needs .venv-airflow (make install)"
)


# 1: today's layout (one process serves and trains); N > 1: N serving replicas and a train process
# behind HAProxy, as `TWEETPULSE_STACK_REPLICAS=N make demo` starts them
REPLICAS = int(os.environ.get("TWEETPULSE_TEST_STACK_REPLICAS", "1"))


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory, tiny_bert) -> dict[str, str]:
    home = tmp_path_factory.mktemp("stack")
    data = home / "data"
    write(data / "train.jsonl", rows(40, 1))
    write(data / "validation.jsonl", rows(15, 2))
    runner, mlflow, airflow, smtp = _free_ports(4)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWEETPULSE_", "AIRFLOW"))}
    env.update(
        TWEETPULSE_HOME=str(home / "home"),
        TWEETPULSE_PORT=str(runner),
        TWEETPULSE_STACK_MLFLOW_PORT=str(mlflow),
        TWEETPULSE_STACK_AIRFLOW_PORT=str(airflow),
        TWEETPULSE_STACK_SMTP_PORT=str(smtp),
        TWEETPULSE_ENCODER_ID=str(tiny_bert),
        TWEETPULSE_ENCODER_MAX_LENGTH="32",
        TWEETPULSE_SENTIMENT_DATA=str(data),
        TWEETPULSE_STACK_DEMO_CONF=json.dumps({"adapters": ["linear"], "folds": 2}),
        TWEETPULSE_STACK_RETRAIN_TIMEOUT_S="900",
        TWEETPULSE_STACK_REPLICAS=str(REPLICAS),
    )
    return env


def _stack(env: dict[str, str], command: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(STACK / "stack.py"), command],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _stack_processes(home: str) -> list[str]:
    """Processes whose environment or command line belongs to this stack's home."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if f"TWEETPULSE_STACK_ID={Path(home).resolve()}".encode() in environ.split(b"\0") or home in cmdline:
            found.append(f"{entry.name}: {cmdline[:120]}")
    return found


def test_demo_then_a_failing_retrain_mails_once_then_down_leaves_nothing(stack_env, tmp_path):
    home = stack_env["TWEETPULSE_HOME"]
    try:
        demo = _stack(stack_env, "demo")
        log = demo.stdout + demo.stderr
        assert demo.returncode == 0, log[-4000:]
        runners = ["model-runner"]
        if REPLICAS > 1:
            runners = [f"model-runner-{i}" for i in range(1, REPLICAS + 1)]
            runners += ["model-runner-train", "balancer"]
        for name in ("smtp", "mlflow", *runners, "airflow-api-server"):
            assert f"{name} is healthy" in log
        assert "champion: tweetpulse-sentiment version 1" in log
        stored = int(log.split("tweets stored: ")[1].split(";")[0])
        classified = int(log.split("classified by this champion: ")[1].split(" ")[0])
        assert stored >= 100 and classified == stored, log[-2000:]

        # a forced failure: a dataset with one class cannot be trained on (under the service's home,
        # one of the folders POST /train may read)
        bad = Path(home) / "bad.jsonl"
        bad.write_text('{"text": "only one class", "label": "positive"}\n' * 5)
        sys.path.insert(0, str(STACK))
        try:
            os.environ.update({k: v for k, v in stack_env.items() if k.startswith("TWEETPULSE_")})
            from config import StackConfig
            from stack import airflow_api

            api = airflow_api(StackConfig())
            run_id = api.trigger("weekly_retrain", {"dataset": str(bad), "adapters": ["linear"]})
            deadline = time.monotonic() + 600
            while api.run_state("weekly_retrain", run_id) not in ("success", "failed"):
                assert time.monotonic() < deadline, api.task_states("weekly_retrain", run_id)
                time.sleep(3)
            # the retrain of each task is a mapped task group: its alert task is retrain.alert_failure
            states = api.task_states("weekly_retrain", run_id)
            assert states["retrain.alert_failure"] == "success", states
        finally:
            sys.path.remove(str(STACK))
            for k in stack_env:
                if k.startswith("TWEETPULSE_"):
                    os.environ.pop(k, None)
        mails = sorted((Path(home) / "mail").glob("*.eml"))
        failures = [m for m in mails if "Weekly-retrain-of-sentiment-failed" in m.name]
        assert len(failures) == 1, [m.name for m in mails]
        mail = message_from_bytes(failures[0].read_bytes(), policy=default)
        body = " ".join(part.get_content() for part in mail.walk() if part.get_content_maintype() == "text")
        assert "failed" in body and ("class" in body or "label" in body), body[:2000]
    finally:
        down = _stack(stack_env, "down", timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    time.sleep(1)
    assert _stack_processes(home) == []
