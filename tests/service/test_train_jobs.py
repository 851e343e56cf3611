"""Training jobs over HTTP: one at a time, in a worker process, promote and hot-reload, survive restarts."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime

import httpx

from model_runner.db import Database
from model_runner.store.jobs import JobStore
from tests.service.conftest import make_dataset, serve, wait_for_job


def test_two_concurrent_trainings_give_one_202_and_one_409_then_the_job_promotes_and_reloads(
    fresh_settings, tmp_path
):
    data = str(make_dataset(fresh_settings.resolved_home() / "data" / "v2", seed=5))
    with serve(fresh_settings) as server:

        async def both():
            async with httpx.AsyncClient(base_url=server.url, timeout=60, headers=server.admin()) as c:
                return await asyncio.gather(
                    *[
                        c.post("/train", json={"dataset": data, "adapters": ["linear"], "folds": 2})
                        for _ in range(2)
                    ]
                )

        responses = asyncio.run(both())
        codes = sorted(r.status_code for r in responses)
        assert codes == [202, 409], [r.text for r in responses]
        accepted = next(r for r in responses if r.status_code == 202).json()["job_id"]
        refused = next(r for r in responses if r.status_code == 409).json()["error"]
        assert refused["job_id"] == accepted and accepted in refused["message"]

        with server.client() as c:
            job = wait_for_job(c, accepted)
            assert job["state"] == "succeeded", job
            assert job["model_version"] == "2" and job["promoted"] is True
            assert job["progress"] == 1.0 and job["metrics"]["macro_recall"] > 0
            assert job["mlflow_run_id"] and job["hub"] == {
                "pushed": False,
                "reason": "no Hub token and repo configured",
            }
            assert job["reload"]["reloaded"] is True
            assert c.get("/model").json()["version"] == "2"
            r = c.post("/inference", json={"messages": ["love it"]})
            assert r.headers["X-Model-Version"] == "tweetpulse-sentiment/2"
            # and the next job may start now
            r = c.post("/train", json={"dataset": "../no/such/folder"}, headers=server.admin())
            assert r.status_code == 422 and "dataset" in r.json()["error"]["message"]


def test_a_failing_job_reports_its_error_and_leaves_the_champion(fresh_settings, tmp_path):
    bad = fresh_settings.resolved_home() / "bad.jsonl"
    bad.write_text('{"text": "only one class here", "label": "positive"}\n' * 3)
    with serve(fresh_settings) as server, server.client() as c:
        r = c.post("/train", json={"dataset": str(bad)}, headers=server.admin())
        assert r.status_code == 202
        job = wait_for_job(c, r.json()["job_id"])
        assert job["state"] == "failed" and job["error"]
        assert "Traceback" not in job["error"]
        assert c.get("/model").json()["version"] == "1"
        # the worker yields the cores to serving (train_worker_nice), whatever the service's own niceness
        log = server.state.jobs.log_path(r.json()["job_id"]).read_text()
        assert f"niceness {min(19, os.nice(0) + fresh_settings.train_worker_nice)}" in log


def test_a_cancelled_job_ends_cancelled_and_leaves_the_champion(fresh_settings):
    with serve(fresh_settings) as server, server.client() as c:
        job_id = c.post("/train", json={"adapters": ["linear", "mlp"]}, headers=server.admin()).json()[
            "job_id"
        ]
        r = c.post(f"/train/{job_id}/cancel", headers=server.admin())
        assert r.status_code == 200 and r.json()["state"] in ("running", "cancelled", "queued")
        job = wait_for_job(c, job_id)
        assert job["state"] == "cancelled", job
        assert c.get("/model").json()["version"] == "1"
        assert c.post(f"/train/{job_id}/cancel", headers=server.admin()).status_code == 409


def test_a_restart_marks_a_job_left_running_as_failed_interrupted(fresh_settings):
    store = JobStore(Database(fresh_settings.database_url.get_secret_value()))
    job = store.create("sentiment", {"adapters": ["linear"]})
    store.update(job.id, state="running", stage="cv", progress=0.4, started_at=datetime.now(UTC))
    with serve(fresh_settings) as server, server.client() as c:
        body = c.get(f"/train/{job.id}").json()
        assert body["state"] == "failed" and body["error"].startswith("interrupted")
        # nothing is running any more, so a new job is accepted
        assert c.post("/train", json={"adapters": ["linear"]}, headers=server.admin()).status_code == 202
        assert c.get("/train").json()["jobs"][0]["state"] in ("queued", "running", "succeeded", "failed")
