"""The ModelRunner's routes as typed methods (the HTTP contract lives in the service's OpenAPI at /docs)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from tweetpulse_dags.runner_client import ModelRunnerClient


class TrainingJob(TypedDict, total=False):
    job_id: str
    task: str
    state: str  # queued | running | succeeded | failed | cancelled
    stage: str | None
    progress: float
    params: dict
    metrics: dict | None
    model_version: str | None
    promoted: bool | None
    mlflow_run_id: str | None
    mlflow_run_url: str | None
    error: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None


class ModelVersion(TypedDict, total=False):
    version: str
    aliases: list[str]
    created_at: str
    run_id: str | None
    metrics: dict[str, float]


@dataclass(frozen=True)
class Classified:
    model_version: str
    predictions: list[dict[str, Any]]  # {"label", "scores", "truncated"} in input order


FINAL_STATES = ("succeeded", "failed", "cancelled")
SLOW_S = 300.0  # statistics with MLflow logging, summaries that embed new tweets
EMBEDDING_S = 900.0  # the first drift check may embed the whole training set (cached afterwards)


class ModelRunner(ModelRunnerClient):
    # --- training --------------------------------------------------------------------------------
    def start_training(self, body: dict[str, Any]) -> str:
        # not idempotent: retried only when the request cannot have reached the service
        return self.request("POST", "/train", json=body, auth=True, idempotent=False)["job_id"]

    def training_job(self, job_id: str) -> TrainingJob:
        return self.request("GET", f"/train/{job_id}")

    def cancel_training(self, job_id: str) -> TrainingJob:
        return self.request("POST", f"/train/{job_id}/cancel", auth=True)

    # --- tasks and models --------------------------------------------------------------------------
    def declared_tasks(self) -> list[dict[str, Any]]:
        """The tasks the service declares (GET /tasks, the tasks file), in order: name, schedule,
        served, ..."""
        return self.request("GET", "/tasks")["tasks"]

    def champion_version(self, task: str) -> str | None:
        """The registered version holding the ``champion`` alias, or None."""
        versions = self.model_versions(task, 100)
        return next((str(v["version"]) for v in versions if "champion" in (v.get("aliases") or [])), None)

    def served_tasks(self) -> list[str]:
        """Tasks that have a model loaded right now (GET /model/tasks)."""
        tasks = self.request("GET", "/model/tasks")["tasks"]
        return [name for name, served in tasks.items() if served]

    def model_versions(self, task: str, limit: int) -> list[ModelVersion]:
        return self.request("GET", "/model/versions", params={"task": task, "limit": limit})["versions"]

    def classify(self, texts: Sequence[str], task: str) -> Classified:
        body = self.request("POST", "/inference", json={"messages": list(texts), "task": task})
        return Classified(str(body["model"]["version"]), body["predictions"])

    # --- inspected tweets ------------------------------------------------------------------------
    def store_tweets(self, found_by: str, tweets: list[dict[str, Any]]) -> dict:
        return self.request("POST", "/tweets", json={"found_by": found_by, "tweets": tweets}, auth=True)

    def store_predictions(self, task: str, model_version: str, predictions: list[dict[str, Any]]) -> dict:
        body = {"task": task, "model_version": model_version, "predictions": predictions}
        return self.request("POST", "/predictions", json=body, auth=True)

    def daily_stats(self, task: str, days: int, until: str, found_by: str | None = None) -> dict:
        body = {"task": task, "days": days, "until": until, "found_by": found_by}
        body = {k: v for k, v in body.items() if v is not None}
        return self.request("POST", "/stats/daily", json=body, auth=True, timeout_s=SLOW_S)

    def prepare_drift_reference(self, task: str) -> dict:
        """Record and embed the training reference (the first call may embed the whole training set)."""
        return self.request(
            "POST", "/drift/reference", params={"task": task}, auth=True, timeout_s=EMBEDDING_S
        )

    def drift(self, task: str, days: float, until: str | None = None) -> dict:
        params = {"task": task, "days": days, "until": until}
        return self.request("GET", "/drift", params=params, timeout_s=SLOW_S)

    def summary(
        self, task: str, since: str, until: str, *, found_by: str | None = None, per_class: int = 3
    ) -> dict:
        params = {"task": task, "since": since, "until": until, "found_by": found_by, "per_class": per_class}
        return self.request("GET", "/tweets/summary", params=params, timeout_s=SLOW_S)

    # --- alert ledger ----------------------------------------------------------------------------
    def claim_alert(self, key: str, kind: str, summary: str, lease_s: float) -> dict:
        body = {"key": key, "kind": kind, "summary": summary[:2000], "lease_s": lease_s}
        return self.request("POST", "/alerts/claim", json=body, auth=True)

    def confirm_alert(self, key: str, token: str) -> None:
        self.request("POST", "/alerts/confirm", json={"key": key, "token": token}, auth=True)

    def release_alert(self, key: str, token: str) -> None:
        self.request("POST", "/alerts/release", json={"key": key, "token": token}, auth=True)

    def resolve_alerts(self, keys: list[str]) -> int:
        return self.request("POST", "/alerts/resolve", json={"keys": keys}, auth=True)["resolved"]
