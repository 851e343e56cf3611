"""MLflow bookkeeping of a training run: the parent run, one nested run per candidate, artifacts.

``RunTracker`` makes every MLflow call of a training run; the stages hand it their results.

The run's inputs are its two splits, logged as MLflow datasets (``mlflow.log_input``, contexts
``training`` and ``evaluation``): name, digest, source, schema and row count, with the label counts
as input tags; the tweets themselves stay where the data came from.

The held-out metrics are logged on the run at step 0 before the model is: MLflow's ``log_model``
(called by ``ModelRegistry.log_and_register``) links every step-0 metric the run has when the model
is logged to the new LoggedModel, so the registered model carries its evaluation metrics.
"""

from __future__ import annotations

import json
import re
import subprocess
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import mlflow.data
import pandas as pd
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource
from mlflow.data.pandas_dataset import PandasDataset
from mlflow.exceptions import MlflowException

from model_runner import __version__
from model_runner.settings import Settings

if TYPE_CHECKING:
    from model_runner.evaluation import EvalReport
    from model_runner.modeling.quantize import QuantizationReport
    from model_runner.registry import GateDecision
    from model_runner.training.cv import CandidateResult
    from model_runner.training.folds import Split
    from model_runner.training.plan import Plan
    from model_runner.training.warmup import Warmup
    from model_runner.wiring import Components

TRAINING = "training"
EVALUATION = "evaluation"
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+(:[\w.-]+)?$")


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


def ensure_experiment(settings: Settings, client: mlflow.MlflowClient) -> str:
    exp = client.get_experiment_by_name(settings.mlflow_experiment)
    if exp is not None:
        return exp.experiment_id
    artifact_location = None if settings.mlflow_tracking_uri else settings.artifact_root()
    return client.create_experiment(settings.mlflow_experiment, artifact_location=artifact_location)


@contextmanager
def training_run(
    settings: Settings, client: mlflow.MlflowClient, run_name: str, tags: dict[str, str]
) -> Iterator[mlflow.ActiveRun]:
    mlflow.set_tracking_uri(settings.tracking_uri())
    experiment_id = ensure_experiment(settings, client)
    # nested runs inherit the *active* experiment, not the parent's: make them the same
    mlflow.set_experiment(experiment_id=experiment_id)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
        yield run


class RunTracker:
    """The MLflow run of one training run, and every param, metric, tag and artifact logged to it."""

    def __init__(self, run: mlflow.ActiveRun, code_version: str):
        self.run = run
        self.code_version = code_version

    @classmethod
    @contextmanager
    def start(cls, components: Components, task: str) -> Iterator[RunTracker]:
        """Start the parent run ``train-<task>``, tagged with the task and the code version."""
        version = code_version()
        tags = {"task": task, "tweetpulse.code_version": version}
        with training_run(components.settings, components.mlflow, f"train-{task}", tags) as run:
            yield cls(run, version)

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    def log_plan(self, plan: Plan, split: Split) -> None:
        """What the run starts from: task, data, encoder, seed, folds, adapters, metric."""
        summary = split.summary
        mlflow.log_params(
            {
                "task": plan.task.name,
                "data.source": str(split.source),
                "data.hash": summary.dataset_hash,
                "encoder.id": plan.encoder_id,
                "encoder.revision": plan.encoder_revision,
                "seed": plan.seed,
                "cv.folds": plan.folds,
                "adapters": plan.adapters,
                "code_version": self.code_version,
                "metric": plan.metric,
            }
        )
        mlflow.log_params(
            flat_params(
                "data.",
                {
                    "rows_in": summary.rows_in,
                    "rows_out": summary.rows_out,
                    "class_balance": summary.class_balance,
                    "eval_source": summary.eval_source,
                },
            )
        )
        log_json(summary.to_dict(), "data_summary.json")
        for context, dataset in split_datasets(plan.task.name, split).items():
            mlflow.log_input(dataset, context=context, tags=dataset_tags(dataset, summary.dataset_hash))

    def log_warmup(self, warm: Warmup) -> None:
        mlflow.log_params(warm.params())

    def warmup_skipped(self, reason: str) -> None:
        mlflow.set_tag("warmup.skipped", reason[:500])

    def log_teacher(self, summary: dict) -> None:
        """Which teacher taught the student, whether this run fitted it, and what it cost."""
        mlflow.log_params(flat_params("teacher.", {k: v for k, v in summary.items() if v is not None}))
        log_json(summary, "teacher.json")

    def teacher_skipped(self, reason: str) -> None:
        mlflow.set_tag("teacher.skipped", reason[:500])

    def log_cv(self, results: Sequence[CandidateResult], best: CandidateResult, metric: str) -> list[dict]:
        """One nested run per candidate, then the winner on the parent run; returns the CV table."""
        table = log_candidates(results, metric)
        mlflow.log_params({"best.adapter": best.candidate.adapter, "best.candidate": best.candidate.name})
        mlflow.log_params(flat_params("best.hp.", best.candidate.hp))
        mlflow.log_metrics({f"cv_{metric}_mean": best.mean(metric), f"cv_{metric}_std": best.std(metric)})
        return table

    def log_fit(self, hp: dict) -> None:
        """The final fit's epochs (they may differ from CV's)."""
        if "epochs" in hp:
            mlflow.log_param("fit.epochs", hp["epochs"])

    def log_evaluation(self, report: EvalReport, folder: Path) -> None:
        """The held-out metrics (per class too: the daily regression check compares those across
        versions) and the report's files in ``folder`` (figures, the F1-by-threshold table,
        report.json) as ``evaluation/``.

        Step 0, before the model is logged: ``log_model`` then links them to the LoggedModel. (Not
        with ``dataset=``: MLflow keeps a metric's dataset only on metrics logged with a model id, and
        its step-0 link copies the run's metrics without it.)"""
        mlflow.log_metrics({k: float(v) for k, v in report.metrics.items() if isinstance(v, int | float)})
        mlflow.log_metrics(
            {
                f"{name}_{label}": float(values[name])
                for label, values in report.metrics.get("per_class", {}).items()
                for name in ("precision", "recall", "f1")
                if name in values
            }
        )
        mlflow.log_artifacts(str(folder), "evaluation")

    def log_quantization(self, quant: QuantizationReport) -> None:
        mlflow.log_metrics({"int8_score_drop": quant.score_drop, "int8_agreement": quant.agreement})
        mlflow.log_param("serving", quant.chosen)
        log_json(quant.to_dict(), "quantization.json")

    def log_decision(self, gate: GateDecision, version: str) -> None:
        mlflow.set_tags(
            {"gate.decision": "promoted" if gate.promote else "rejected", "model_version": version}
        )


def log_candidates(results: Sequence[CandidateResult], metric: str) -> list[dict]:
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


def split_datasets(task: str, split: Split) -> dict[str, PandasDataset]:
    """The training and evaluation rows as MLflow datasets (text + label name), by context.

    Only their metadata is ever logged: MLflow computes the digest and profile from the rows.
    """
    source = dataset_source(split.source)
    rows = {TRAINING: (split.train_texts, split.y_train), EVALUATION: (split.eval_texts, split.y_eval)}
    datasets = {}
    for context, (texts, y) in rows.items():
        frame = pd.DataFrame({"text": list(texts), "label": [_label_name(v, split.labels) for v in y]})
        name = f"{task}-{'train' if context == TRAINING else 'eval'}"
        datasets[context] = mlflow.data.from_pandas(frame, source=source, name=name, targets="label")
    return datasets


def dataset_tags(dataset: PandasDataset, data_hash: str) -> dict[str, str]:
    """Input tags of a logged split: its row count, label counts and the prepared data's hash."""
    counts = Counter(dataset.df["label"].tolist())
    return {
        "rows": str(len(dataset.df)),
        "label_counts": json.dumps(dict(sorted(counts.items())))[:500],
        "data.hash": data_hash,
    }


def dataset_source(source: str) -> DatasetSource | None:
    """Where the data came from, as an MLflow dataset source: an existing path as its absolute
    location, an ``owner/name[:config]`` id as a Hugging Face Hub dataset, else MLflow's guess."""
    path = Path(source).expanduser()
    if not path.exists() and _HUB_ID.match(source):
        name, _, config = source.partition(":")
        return HuggingFaceDatasetSource(path=name, config_name=config or None)
    with warnings.catch_warnings():
        # Local paths match two equivalent resolvers; MLflow warns about the ambiguity.
        warnings.simplefilter("ignore", UserWarning)
        try:
            return resolve_dataset_source(str(path.resolve()) if path.exists() else source)
        except MlflowException:
            return None  # MLflow then records the code that built the dataset as its source


def _label_name(value: object, labels: Sequence[str]) -> str:
    # Splits carry class indices; anything else is already a name.
    try:
        return labels[int(value)]
    except (TypeError, ValueError, IndexError):
        return str(value)


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
