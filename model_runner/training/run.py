"""A whole training run: data -> embeddings -> CV -> final fit -> report -> MLflow -> int8 -> gate.

The champion alias moves only in the very last step, after the candidate has been registered and
has beaten (or matched) the champion on the same evaluation rows: a run that fails, is cancelled or
is interrupted anywhere before that leaves the served model exactly as it was.

``run_training`` lists the stages; each is a function below that takes and returns frozen values.
Every MLflow call goes through the run's ``RunTracker`` (tracking.py), progress, stage timing and
cancellation through its ``TrainingClock`` (clock.py).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from model_runner.data import DataError, prepare_dataset
from model_runner.evaluation import EvalReport, evaluate
from model_runner.modeling.classifier import TweetClassifier
from model_runner.modeling.quantize import QuantizationReport, check_quantization
from model_runner.registry import ModelRegistry
from model_runner.settings import Settings
from model_runner.tasks import Task
from model_runner.teacher.stage import TeacherUnavailable, Teaching, teach, unlabelled_tweets
from model_runner.training.clock import ProgressFn, TrainingClock
from model_runner.training.cv import CandidateResult, run_cv
from model_runner.training.fitting import ValRows, build_classifier, fit_candidate, resolve_hp
from model_runner.training.folds import CVData, Split
from model_runner.training.gate import judge, metric_fn
from model_runner.training.history import CURVE_ROWS, EpochHistory, curve_sample, fan_out, texts_at
from model_runner.training.plan import Plan
from model_runner.training.search_space import Candidate
from model_runner.training.tracking import RunTracker
from model_runner.training.warmup import Warmup, embed_with, warm_up_encoder
from model_runner.wiring import Components

log = logging.getLogger(__name__)

# The stages in run order, each with the share of the overall progress bar it ends at.
STAGES = {
    "data": 0.02,
    "embed": 0.08,
    "teacher": 0.25,
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
    teacher: dict | None = None  # the teacher of the run's distill candidate (Teaching.summary)

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
            "teacher": _teacher_line(self.teacher),
            "run_id": self.run_id,
            "seconds": round(self.seconds, 1),
            "stage_seconds": {k: round(v, 1) for k, v in self.stage_seconds.items()},
        }

    def to_dict(self) -> dict:
        return asdict(self)


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
    clock = TrainingClock(STAGES, progress=progress, should_stop=should_stop)
    with clock.stage("data"):
        split = load_split(settings, task, data or task.data, sample_fraction, extra_rows)
    with clock.stage("embed"):
        cv_data = embed_training_rows(components, split)
    plan = Plan.of(settings, task, components.embeddings.encoder, adapters=adapters, folds=folds)
    registry = components.registry

    with RunTracker.start(components, task.name) as tracker, contextlib.ExitStack() as scratch:
        teaching = None
        if plan.wants_teacher:
            with clock.stage("teacher"):
                cv_data, teaching = teach_student(components, task, split, cv_data, tracker, clock)
            if teaching is None:
                plan = plan.without_teacher()
        tracker.log_plan(plan, split)
        warm = None
        if plan.needs_warmup:
            with clock.stage("warmup"):
                cv_data, warm = warm_up(components, task, cv_data, tracker, clock, scratch)
        with clock.stage("cv"):
            best, cv_table = cross_validate(plan, cv_data, tracker, clock)
        with clock.stage("fit"):
            final = fit_final(plan, best.candidate, cv_data, split, warm, tracker, clock)
            if teaching is not None and final.candidate.adapter == "distill":
                final.model.meta["teacher"] = teaching.record.meta()
        with clock.stage("evaluate"):
            evaluation = evaluate_held_out(settings, plan, final, split, tracker)
        with clock.stage("register"):
            version = register(registry, plan, final, evaluation, split, settings.runtime_probe_texts)
        with clock.stage("gate"):  # the same evaluation rows for candidate and champion
            gate = judge(registry, task.name, split, evaluation.report.metrics, plan.metric, settings)
            registry.set_tags(task.name, version, gate.as_tags())
            clock.check()
            if gate.promote:
                if before_promote:
                    before_promote()
                registry.promote(task.name, version)
                if on_promoted:
                    on_promoted(version)
            tracker.log_decision(gate, version)
        clock.finish()

    return TrainOutcome(
        task=task.name,
        run_id=tracker.run_id,
        model_version=version,
        promoted=gate.promote,
        metric=plan.metric,
        metrics=evaluation.report.metrics,
        gate=asdict(gate),
        best_candidate=final.candidate.name,
        cv=cv_table,
        quantization=evaluation.quantization.to_dict(),
        data=split.summary.to_dict(),
        seconds=clock.elapsed(),
        stage_seconds=clock.timings,
        warmup=final.warmup.meta() if final.warmup else None,
        teacher=teaching.summary() if teaching else None,
    )


def _teacher_line(teacher: dict | None) -> str | None:
    if not teacher:
        return None
    how = "fitted" if teacher["fitted"] else "reused"
    return f"{teacher['base_id']} ({how}; ran on {teacher['computed']} texts, {teacher['cached']} cached)"


# --- the stages, in run order ----------------------------------------------------------------------
def load_split(
    settings: Settings,
    task: Task,
    source: str,
    sample_fraction: float | None,
    extra_rows: Iterable[Mapping] | None,
) -> Split:
    """The task's data, cleaned and split into training rows and held-out evaluation rows."""
    prepared = prepare_dataset(
        source,
        **task.read_options(),
        eval_fraction=settings.eval_fraction,
        sample_fraction=sample_fraction,
        seed=settings.seed,
        extra_rows=extra_rows,
    )
    return Split.of(prepared, source=source)


def embed_training_rows(components: Components, split: Split) -> CVData:
    """The training rows with their embeddings, cached in pgvector: a re-run embeds only new texts."""
    store = components.embeddings
    x = store.get_or_compute(split.train_texts, progress=True)
    return CVData.build(split=split, x=x, encoder=store.encoder, settings=components.settings)


def teach_student(
    components: Components,
    task: Task,
    split: Split,
    data: CVData,
    tracker: RunTracker,
    clock: TrainingClock,
) -> tuple[CVData, Teaching | None]:
    """The teacher's soft labels for the training rows (and for stored unlabelled tweets): fitted or
    reused, cached in Postgres (teacher/stage.py). Without a teacher (``teacher=off``, weights not
    installed) the run goes on with the plain fine-tune and the MLflow run says why."""
    settings = components.settings
    if settings.teacher == "off":
        tracker.teacher_skipped("teacher=off")
        return data, None
    cap = min(settings.distill_unlabelled_max, len(split.train_texts) // 2)
    exclude = [*split.train_texts, *split.eval_texts]
    unlabelled = unlabelled_tweets(components.db, cap, exclude) if cap else []
    try:
        teaching = teach(
            settings,
            components.teachers,
            task,
            split,
            clock,
            run_id=tracker.run_id,
            unlabelled=unlabelled,
        )
    except TeacherUnavailable as exc:
        log.warning("no teacher, training the plain fine-tune instead of the student: %s", exc)
        tracker.teacher_skipped(str(exc))
        return data, None
    tracker.log_teacher(teaching.summary())
    log.info("teacher: %s", teaching.summary())
    return data.taught(teaching.soft, teaching.unlabelled_texts, teaching.unlabelled_soft), teaching


def warm_up(
    components: Components,
    task: Task,
    data: CVData,
    tracker: RunTracker,
    clock: TrainingClock,
    scratch: contextlib.ExitStack,
) -> tuple[CVData, Warmup | None]:
    """Warm the encoder up on ``task.warmup``'s data; returns ``data`` with its encoder adapters
    starting from the warmed encoder (which lives in ``scratch`` until the run ends).

    Missing warm-up data is not fatal: the run trains from the base encoder, says so in the log and
    tags the MLflow run ``warmup.skipped`` with the reason.
    """
    folder = Path(scratch.enter_context(tempfile.TemporaryDirectory(prefix="tp-warmup-")))
    history = EpochHistory(tracker.run_id, "warmup")
    try:
        warm = warm_up_encoder(
            components,
            task,
            folder / "encoder",
            should_stop=clock.stop_requested,
            # data, embeddings and the initial head take the first few percent; the epochs the rest
            on_step=fan_out(clock.fit_progress(0.05, 0.9), history),
        )
    except DataError as exc:
        log.warning("warm-up on %s skipped, training from the base encoder: %s", task.warmup, exc)
        tracker.warmup_skipped(str(exc))
        return data, None
    clock.progress(0.9, "embedding the training rows with the warmed encoder")
    warmed = data.starting_from(str(warm.path), embed_with(warm, data.texts, components))
    tracker.log_warmup(warm)
    log.info("warm-up on %s done in %.0f s", warm.task, warm.seconds)
    return warmed, warm


def cross_validate(
    plan: Plan, data: CVData, tracker: RunTracker, clock: TrainingClock
) -> tuple[CandidateResult, list[dict]]:
    """Every candidate on folds of the training rows only; the best by the task's metric, the table."""
    results = run_cv(
        plan.candidates,
        data,
        folds=plan.folds,
        workers=plan.workers,
        should_stop=clock.stop_requested,
        on_progress=clock.progress,
    )
    best = max(results, key=lambda r: r.mean(plan.metric))
    table = tracker.log_cv(results, best, plan.metric)
    log.info(
        "best candidate %s: %s %.4f +- %.4f",
        best.candidate.name,
        plan.metric,
        best.mean(plan.metric),
        best.std(plan.metric),
    )
    return best, table


@dataclass(frozen=True)
class FinalFit:
    candidate: Candidate
    model: TweetClassifier  # the deployable model; ``register`` adds serving and metrics to its meta
    warmup: Warmup | None  # the warm-up its encoder started from, if any


def fit_final(
    plan: Plan,
    candidate: Candidate,
    data: CVData,
    split: Split,
    warm: Warmup | None,
    tracker: RunTracker,
    clock: TrainingClock,
) -> FinalFit:
    """``candidate`` fitted on the whole training split.

    An epoch-based fit (mlp, lora, finetune) reports every batch to the clock (progress and an
    "epoch e/E, batch b/B" detail) and logs its loss curves (history.py): at each epoch's end, on a
    sample of the held-out rows, for watching only; the linear head is one solve, without either.
    """
    hp = resolve_hp(candidate, len(data.y))
    tracker.log_fit(hp)
    epochs = f", {hp['epochs']} epochs" if "epochs" in hp else ""
    clock.progress(0.0, f"fitting {candidate.name} on {len(data.y)} rows{epochs}")
    history = EpochHistory(tracker.run_id, "fit")
    pick = curve_sample(split.y_eval, CURVE_ROWS, data.seed)
    if candidate.adapter != "linear" and len(pick):
        history.describe(len(pick), "held-out evaluation split (monitoring only)")
    fitted = fit_candidate(
        candidate,
        data,
        np.arange(len(data.y)),
        should_stop=clock.stop_requested,
        on_step=fan_out(clock.fit_progress(0.02, 0.95), history),
        val=ValRows(texts_at(split.eval_texts, pick), split.y_eval[pick]) if len(pick) else None,
    )
    clock.progress(0.95, "building the deployable model")
    meta = {
        "task": plan.task.name,
        "adapter": candidate.adapter,
        "hyperparameters": hp,
        "base_model": plan.base_model,
        "data_hash": split.summary.dataset_hash,
        "metric": plan.metric,
    }
    if candidate.uses_cache:
        warm = None  # a head on the frozen base encoder won: the warmed encoder is not in the model
    if warm is not None:
        meta["warmup"] = warm.meta()
    return FinalFit(candidate, build_classifier(fitted, candidate, data, meta), warm)


@dataclass(frozen=True)
class Evaluation:
    report: EvalReport
    quantization: QuantizationReport  # whether int8 may serve the model


def evaluate_held_out(
    settings: Settings, plan: Plan, final: FinalFit, split: Split, tracker: RunTracker
) -> Evaluation:
    """One evaluation on the held-out split, then the int8 check on the same rows."""
    with tempfile.TemporaryDirectory(prefix="tp-train-") as tmp:
        folder = Path(tmp) / "report"
        report = evaluate(
            split.y_eval,
            final.model.predict_proba(split.eval_texts, clean=False),
            split.labels,
            folder,
            n_boot=settings.bootstrap_samples,
            seed=settings.seed,
            title=f"{plan.task.name} {final.candidate.name}",
        )
        tracker.log_evaluation(report, folder)
    quant, _ = check_quantization(
        final.model,
        split.eval_texts,
        split.y_eval,
        metric=metric_fn(plan.metric, len(split.labels)),
        max_drop=settings.quant_max_drop,
        min_agreement=settings.quant_min_agreement,
    )
    tracker.log_quantization(quant)
    return Evaluation(report, quant)


def register(
    registry: ModelRegistry,
    plan: Plan,
    final: FinalFit,
    evaluation: Evaluation,
    split: Split,
    probe_rows: int,
) -> str:
    """The model as a new registered version (no alias yet); returns the version.

    The folder carries a stratified sample of the held-out rows (``probe.json``): wherever the model
    is loaded, each candidate runtime is checked and timed on them (modeling/runtimes.py)."""
    metrics = evaluation.report.metrics
    final.model.meta.update(
        {
            "serving": evaluation.quantization.chosen,
            "metrics": _headline(metrics, plan.metric),
            # the served model's age (Prometheus rule: a champion older than the retrain schedule)
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    pick = curve_sample(split.y_eval, probe_rows, plan.seed)
    final.model.probe = {
        "texts": texts_at(split.eval_texts, pick),
        "labels": [split.labels[int(i)] for i in split.y_eval[pick]],
    }
    with tempfile.TemporaryDirectory(prefix="tp-train-") as tmp:
        folder = Path(tmp) / "model"
        final.model.save(folder)
        version = registry.log_and_register(
            folder,
            task=plan.task.name,
            input_example=split.eval_texts[:3],
            tags={
                "task": plan.task.name,
                "adapter": final.candidate.adapter,
                "data_hash": split.summary.dataset_hash,
            },
        )
    return version.version


def _headline(metrics: dict, metric: str) -> dict:
    keys = ("macro_recall", "macro_f1", "accuracy", "macro_recall_ci", "macro_f1_ci")
    return {k: metrics[k] for k in keys if k in metrics} | {"primary": metric}
