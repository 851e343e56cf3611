"""MLflow bookkeeping of a training run: the parent run, one nested run per candidate, artifacts."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow

from model_runner import __version__
from model_runner.settings import Settings
from model_runner.training.cv import CandidateResult


def code_version() -> str:
    """The git commit when running from a checkout, else the package version."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
            check=True,
        ).stdout.strip()
        return f"{__version__}+g{sha}"
    except (OSError, subprocess.SubprocessError):
        return __version__


def ensure_experiment(settings: Settings) -> str:
    client = mlflow.MlflowClient(settings.tracking_uri())
    exp = client.get_experiment_by_name(settings.mlflow_experiment)
    if exp is not None:
        return exp.experiment_id
    artifact_location = None if settings.mlflow_tracking_uri else settings.artifact_root()
    return client.create_experiment(settings.mlflow_experiment, artifact_location=artifact_location)


@contextmanager
def training_run(settings: Settings, run_name: str, tags: dict[str, str]) -> Iterator[mlflow.ActiveRun]:
    mlflow.set_tracking_uri(settings.tracking_uri())
    experiment_id = ensure_experiment(settings)
    # nested runs inherit the *active* experiment, not the parent's: make them the same
    mlflow.set_experiment(experiment_id=experiment_id)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
        yield run


def log_candidates(results: list[CandidateResult], metric: str) -> list[dict]:
    """One nested run per candidate with its per-fold and mean/std scores; returns the CV table."""
    table = []
    for res in results:
        row = {
            "candidate": res.candidate.name,
            "adapter": res.candidate.adapter,
            f"{metric}_mean": res.mean(metric),
            f"{metric}_std": res.std(metric),
            "folds": len(res.folds),
            "seconds": round(sum(f.seconds for f in res.folds), 2),
        }
        table.append(row)
        with mlflow.start_run(run_name=res.candidate.name, nested=True):
            mlflow.log_params({"adapter": res.candidate.adapter, **res.candidate.hp})
            for fold in sorted(res.folds, key=lambda f: f.fold):
                mlflow.log_metrics({f"cv_{k}": v for k, v in fold.metrics.items()}, step=fold.fold)
            for name in ("macro_recall", "macro_f1", "accuracy"):
                mlflow.log_metric(f"cv_{name}_mean", res.mean(name))
                mlflow.log_metric(f"cv_{name}_std", res.std(name))
    return table


def log_json(obj: dict, artifact_file: str) -> None:
    mlflow.log_text(json.dumps(obj, indent=2, sort_keys=True, default=str), artifact_file)


def flat_params(prefix: str, obj: dict) -> dict[str, str]:
    """MLflow params are flat strings of limited length: flatten one level and trim."""
    out = {}
    for key, value in obj.items():
        text = (
            json.dumps(value, sort_keys=True, default=str) if isinstance(value, dict | list) else str(value)
        )
        out[f"{prefix}{key}"] = text[:500]
    return out
