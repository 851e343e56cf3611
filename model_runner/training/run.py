"""A whole training run: data -> embeddings -> CV -> final fit -> report -> MLflow -> int8 -> gate.

The champion alias moves only in the very last step, after the candidate has been registered and
has beaten (or matched) the champion on the same evaluation rows: a run that fails, is cancelled or
is interrupted anywhere before that leaves the served model exactly as it was.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mlflow
import numpy as np

from model_runner.data import DataError, prepare_dataset
from model_runner.evaluation import bootstrap_ci, evaluate
from model_runner.modeling.classifier import TweetClassifier
from model_runner.modeling.quantize import check_quantization
from model_runner.registry import ModelRegistry, decide
from model_runner.tasks import Task
from model_runner.training import tracking
from model_runner.training.cv import CVData, run_cv
from model_runner.training.fitting import build_classifier, fit_candidate, resolve_hp
from model_runner.training.search_space import candidates_for
from model_runner.training.warmup import Warmup, embed_with, warm_up_encoder
from model_runner.wiring import Components

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, float], None]  # (stage, overall progress 0..1)

# Share of the overall progress bar that each stage ends at.
_STAGES = {
    "data": 0.02,
    "embed": 0.12,
    "warmup": 0.3,
    "cv": 0.6,
    "fit": 0.85,
    "evaluate": 0.9,
    "register": 0.95,
    "gate": 1.0,
}


@dataclass
class TrainOutcome:
    task: str
    run_id: str
    model_version: str
    promoted: bool
    metric: str
    metrics: dict
    gate: dict
    best_candidate: str
    cv: list[dict]
    quantization: dict
    data: dict
    seconds: float
    stage_seconds: dict = field(default_factory=dict)
    warmup: dict | None = None  # the warm-up the chosen model's encoder started from, if any

    def summary(self) -> dict:
        """What the CLI prints and the job stores: small and JSON-friendly."""
        return {
            "task": self.task,
            "model_version": self.model_version,
            "promoted": self.promoted,
            "best_candidate": self.best_candidate,
            self.metric: round(self.metrics[self.metric], 4),
            f"{self.metric}_ci": [round(v, 4) for v in self.metrics[f"{self.metric}_ci"]],
            "macro_recall": round(self.metrics["macro_recall"], 4),
            "macro_f1": round(self.metrics["macro_f1"], 4),
            "accuracy": round(self.metrics["accuracy"], 4),
            "serving": self.quantization.get("chosen"),
            "warmup": self.warmup["task"] if self.warmup else None,
            "run_id": self.run_id,
            "seconds": round(self.seconds, 1),
        }

    def to_dict(self) -> dict:
        return asdict(self)


def _metric_fn(metric: str, n_classes: int) -> Callable[[np.ndarray, np.ndarray], float]:
    """Metric averaged over all the task's classes, also those a model never predicts."""
    from sklearn.metrics import f1_score, recall_score

    fn = recall_score if metric == "macro_recall" else f1_score
    classes = list(range(n_classes))
    return lambda y, p: float(fn(y, p, labels=classes, average="macro", zero_division=0))


def _workers(components: Components, device: str, n_jobs: int) -> int:
    configured = components.settings.cv_workers
    if configured:
        return configured
    return min(n_jobs, 2 if device == "cuda" else max(1, os.cpu_count() or 1))


def run_training(
    components: Components,
    task: Task,
    *,
    data: str | None = None,
    adapters: list[str] | None = None,
    folds: int | None = None,
    sample_fraction: float | None = None,
    extra_rows: Iterable[Mapping] | None = None,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    before_promote: Callable[[], None] | None = None,
    on_promoted: Callable[[str], None] | None = None,
) -> TrainOutcome:
    """``before_promote`` may raise to keep the alias where it is (a training job checks its lease);
    ``on_promoted(version)`` runs right after the alias moved, before anything else can fail."""
    settings = components.settings
    started = time.perf_counter()
    timings: dict[str, float] = {}
    clock = [started]

    def stage(name: str, within: float = 1.0) -> None:
        if should_stop and should_stop():
            raise InterruptedError("training cancelled")
        keys = list(_STAGES)
        lo = _STAGES[keys[keys.index(name) - 1]] if keys.index(name) else 0.0
        if progress:
            progress(name, lo + (_STAGES[name] - lo) * within)

    def done(name: str) -> None:
        now = time.perf_counter()
        timings[name] = round(now - clock[0], 2)
        clock[0] = now

    # 1. data
    stage("data", 0)
    source = data or task.data
    prepared = prepare_dataset(
        source,
        label_names=task.int_labels,
        eval_fraction=settings.eval_fraction,
        sample_fraction=sample_fraction,
        seed=settings.seed,
        extra_rows=extra_rows,
    )
    labels = prepared.labels
    train_texts, y_train = list(prepared.train["text"]), np.asarray(prepared.train["label"])
    eval_texts, y_eval = list(prepared.eval["text"]), np.asarray(prepared.eval["label"])
    done("data")

    # 2. embeddings (cached in pgvector: a re-run embeds only new texts)
    stage("embed", 0)
    store = components.embeddings
    x_train = store.get_or_compute(train_texts, progress=True)
    encoder = store.encoder
    done("embed")

    candidates = candidates_for(adapters or settings.adapters.split(","))
    k = folds or settings.cv_folds
    device = "cuda" if encoder.device.type == "cuda" else "cpu"
    cv_data = CVData(
        x_train,
        train_texts,
        y_train,
        labels,
        str(encoder.resolved.path),
        settings.encoder_max_length,
        settings.seed,
        device,
    )
    metric = task.metric
    registry = ModelRegistry(settings.tracking_uri(), name_prefix=settings.registry_prefix)
    run_tags = {"task": task.name, "tweetpulse.code_version": tracking.code_version()}

    training_run = tracking.training_run(settings, f"train-{task.name}", run_tags)
    with training_run as run, contextlib.ExitStack() as scratch:
        mlflow.log_params(
            {
                "task": task.name,
                "data.source": str(source),
                "data.hash": prepared.summary.dataset_hash,
                "encoder.id": encoder.encoder_id,
                "encoder.revision": encoder.revision,
                "seed": settings.seed,
                "cv.folds": k,
                "adapters": ",".join(sorted({c.adapter for c in candidates})),
                "code_version": run_tags["tweetpulse.code_version"],
                "metric": metric,
            }
        )
        mlflow.log_params(
            tracking.flat_params(
                "data.",
                {
                    "rows_in": prepared.summary.rows_in,
                    "rows_out": prepared.summary.rows_out,
                    "class_balance": prepared.summary.class_balance,
                    "eval_source": prepared.summary.eval_source,
                },
            )
        )
        tracking.log_json(prepared.summary.to_dict(), "data_summary.json")

        # 3. warm-up: encoder adapters start from an encoder tuned on another task's tweets
        warm = None
        if task.warmup and not all(c.uses_cache for c in candidates):
            stage("warmup", 0)
            warm = _warm_up(components, task, cv_data, scratch, should_stop, lambda f: stage("warmup", f))
            done("warmup")

        # 4. cross-validation on the training split only
        stage("cv", 0)
        results = run_cv(
            candidates,
            cv_data,
            folds=k,
            workers=_workers(components, device, len(candidates) * k),
            should_stop=should_stop,
            on_progress=lambda f: stage("cv", f),
        )
        cv_table = tracking.log_candidates(results, metric)
        best = max(results, key=lambda r: r.mean(metric))
        log.info(
            "best candidate %s: %s %.4f +- %.4f",
            best.candidate.name,
            metric,
            best.mean(metric),
            best.std(metric),
        )
        mlflow.log_params({"best.adapter": best.candidate.adapter, "best.candidate": best.candidate.name})
        mlflow.log_params(tracking.flat_params("best.hp.", best.candidate.hp))
        mlflow.log_metrics({f"cv_{metric}_mean": best.mean(metric), f"cv_{metric}_std": best.std(metric)})
        done("cv")

        # 5. final fit on the whole training split
        stage("fit", 0)
        fit_hp = resolve_hp(best.candidate, len(y_train))
        if "epochs" in fit_hp:
            mlflow.log_param("fit.epochs", fit_hp["epochs"])
        fitted = fit_candidate(best.candidate, cv_data, np.arange(len(y_train)), should_stop=should_stop)
        meta = {
            "task": task.name,
            "adapter": best.candidate.adapter,
            "hyperparameters": fit_hp,
            "base_model": {"id": encoder.encoder_id, "revision": encoder.revision},
            "data_hash": prepared.summary.dataset_hash,
            "metric": metric,
        }
        if warm is not None and best.candidate.uses_cache:
            warm = None  # a head on the frozen base encoder won: the warmed encoder is not in the model
        if warm is not None:
            meta["warmup"] = warm.meta()
        model = build_classifier(fitted, best.candidate, cv_data, meta)
        done("fit")

        # 6. one evaluation on the held-out split
        stage("evaluate", 0)
        with tempfile.TemporaryDirectory(prefix="tp-train-") as tmp:
            tmp = Path(tmp)
            proba = model.predict_proba(eval_texts, clean=False)
            report = evaluate(
                y_eval,
                proba,
                labels,
                tmp / "report",
                n_boot=settings.bootstrap_samples,
                seed=settings.seed,
                title=f"{task.name} {best.candidate.name}",
            )
            mlflow.log_metrics(
                {k_: float(v) for k_, v in report.metrics.items() if isinstance(v, int | float)}
            )
            # per-class figures as flat metrics: what the daily regression check compares across versions
            mlflow.log_metrics(
                {
                    f"{name}_{label}": float(values[name])
                    for label, values in report.metrics.get("per_class", {}).items()
                    for name in ("precision", "recall", "f1")
                    if name in values
                }
            )
            mlflow.log_artifacts(str(tmp / "report"), "evaluation")
            quant, _ = check_quantization(
                model,
                eval_texts,
                y_eval,
                metric=_metric_fn(metric, len(labels)),
                max_drop=settings.quant_max_drop,
                min_agreement=settings.quant_min_agreement,
            )
            mlflow.log_metrics({"int8_score_drop": quant.score_drop, "int8_agreement": quant.agreement})
            mlflow.log_param("serving", quant.chosen)
            tracking.log_json(quant.to_dict(), "quantization.json")
            done("evaluate")

            # 7. register the candidate (a new version; no alias yet)
            stage("register", 0)
            model.meta.update({"serving": quant.chosen, "metrics": _headline(report.metrics, metric)})
            model.save(tmp / "model")
            version = registry.log_and_register(
                tmp / "model",
                task=task.name,
                input_example=eval_texts[:3],
                tags={
                    "task": task.name,
                    "adapter": best.candidate.adapter,
                    "data_hash": prepared.summary.dataset_hash,
                },
            )
            done("register")

        # 8. the gate: the same eval rows for candidate and champion
        stage("gate", 0)
        gate = _gate(registry, task, labels, eval_texts, y_eval, report, metric, settings)
        registry.set_tags(task.name, version.version, gate.as_tags())
        if should_stop and should_stop():
            raise InterruptedError("training cancelled")
        if gate.promote:
            if before_promote:
                before_promote()
            registry.promote(task.name, version.version)
            if on_promoted:
                on_promoted(version.version)
        mlflow.set_tags(
            {"gate.decision": "promoted" if gate.promote else "rejected", "model_version": version.version}
        )
        done("gate")
        stage("gate", 1.0)

    return TrainOutcome(
        task=task.name,
        run_id=run.info.run_id,
        model_version=version.version,
        promoted=gate.promote,
        metric=metric,
        metrics=report.metrics,
        gate=asdict(gate),
        best_candidate=best.candidate.name,
        cv=cv_table,
        quantization=quant.to_dict(),
        data=prepared.summary.to_dict(),
        seconds=time.perf_counter() - started,
        stage_seconds=timings,
        warmup=warm.meta() if warm else None,
    )


def _warm_up(components, task, cv_data, scratch, should_stop, on_progress) -> Warmup | None:
    """Warm the encoder up on ``task.warmup``'s data and point ``cv_data``'s encoder adapters at it.

    Missing warm-up data is not fatal: the run trains from the base encoder, says so in the log and
    tags the MLflow run ``warmup.skipped`` with the reason.
    """
    folder = Path(scratch.enter_context(tempfile.TemporaryDirectory(prefix="tp-warmup-")))
    try:
        warm = warm_up_encoder(
            components,
            task,
            folder / "encoder",
            should_stop=should_stop,
            on_epoch=lambda epoch, epochs: on_progress(0.9 * epoch / epochs),
        )
    except DataError as exc:
        log.warning("warm-up on %s skipped, training from the base encoder: %s", task.warmup, exc)
        mlflow.set_tag("warmup.skipped", str(exc)[:500])
        return None
    cv_data.init_path = str(warm.path)
    cv_data.x_init = embed_with(warm, cv_data.texts, components)
    mlflow.log_params(warm.params())
    log.info("warm-up on %s done in %.0f s", warm.task, warm.seconds)
    return warm


def _headline(metrics: dict, metric: str) -> dict:
    keys = ("macro_recall", "macro_f1", "accuracy", "macro_recall_ci", "macro_f1_ci")
    return {k: metrics[k] for k in keys if k in metrics} | {"primary": metric}


def _gate(registry, task, labels, eval_texts, y_eval, report, metric, settings):
    champion = registry.champion(task.name)
    candidate_ci = tuple(report.metrics[f"{metric}_ci"])
    if champion is None:
        return decide(
            report.metrics[metric],
            None,
            tolerance=settings.gate_tolerance,
            metric=metric,
            candidate_ci=candidate_ci,
        )
    with tempfile.TemporaryDirectory(prefix="tp-champion-") as tmp:
        folder = registry.download(task.name, version=champion.version, alias=None, dst=Path(tmp))
        old = TweetClassifier.load(folder)
        # map the champion's label names onto this run's indices; a name this run does not know
        # (the label set changed) is replaced by a class that is certainly wrong
        index = {name: i for i, name in enumerate(labels)}
        names = old.predict(eval_texts, clean=False)
    k = len(labels)
    pred = np.array([index.get(name, (int(y) + 1) % k) for name, y in zip(names, y_eval, strict=True)])
    champion_score = _metric_fn(metric, k)(y_eval, pred)
    champion_ci = bootstrap_ci(
        y_eval, pred, metric, n_boot=settings.bootstrap_samples, seed=settings.seed, n_classes=k
    )
    return decide(
        report.metrics[metric],
        float(champion_score),
        tolerance=settings.gate_tolerance,
        metric=metric,
        candidate_ci=candidate_ci,
        champion_ci=tuple(champion_ci),
        champion_version=champion.version,
    )
