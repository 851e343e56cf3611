"""schemathesis, the way an outside run calls it: its CLI against the live app's ``/openapi.json``,
every operation, all generation modes and its examples, coverage (boundary values) and fuzzing
phases, once with the read token and once with the admin token. Checks: no 5xx, and every documented
response fits its schema. Example counts are bounded for a 2-core CI.

``POST /train`` runs against a launcher that records the request instead of training (this test only).
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.service.conftest import ADMIN_TOKEN, READ_TOKEN

CLI = Path(sys.executable).with_name("schemathesis")


@pytest.fixture
def recorded_training(live, monkeypatch):
    requests = []

    async def submit(task: str, params: dict):
        requests.append((task, params))
        return SimpleNamespace(id=str(uuid.uuid4()), task=task, state="queued", created_at=datetime.now(UTC))

    monkeypatch.setattr(live.state.jobs, "submit", submit)
    return requests


@pytest.mark.parametrize("token", [READ_TOKEN, ADMIN_TOKEN], ids=["read", "admin"])
def test_no_operation_answers_5xx_or_off_schema(live, recorded_training, token, tmp_path):
    run = subprocess.run(
        [
            str(CLI),
            "run",
            f"{live.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "20",
            "--seed",
            "7",
            "--workers",
            "1",
            "--request-timeout",
            "60",
            "--continue-on-failure",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-12000:] + run.stderr[-3000:]
    passed = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert passed and int(passed.group(2)) > 500, run.stdout[-3000:]  # it really exercised the API
