"""The teacher stage of a training run: a teacher for the task, and its logits for every training text.

In order (``teach``):

1. ``teacher=off`` or no teacher weights on this machine: no teacher; the run's ``distill`` candidate
   becomes the plain fine-tune and the MLflow run says why (``teacher.skipped``). Weights that fail
   their digest are refused: the run fails with the reason (``TeacherDigestError``).
2. The newest teacher of the task on the same base weights and labels is reused, unless
   ``teacher=refit`` or more than ``teacher_refit_new_share`` of the training texts are new to it (it
   has no logits for them). Otherwise the teacher is fine-tuned on the training rows (``fit.py``), saved
   under ``<home>/teachers/<task>/`` and recorded in Postgres; its logits for its own training rows
   are stored (in-sample).
3. Texts without cached logits (new rows of a weekly retrain; the inspector's unlabelled tweets) go
   through the teacher once, and their logits are cached: a second run with the same data runs the
   teacher on nothing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_runner.encoder.resolve import EncoderNotFoundError, ResolvedModel
from model_runner.modeling.classifier import TweetClassifier
from model_runner.settings import Settings
from model_runner.store.keys import normalise, text_key
from model_runner.tasks import Task
from model_runner.teacher.fit import fit_teacher, teacher_hp, teacher_key, teacher_logits
from model_runner.teacher.source import resolve_teacher
from model_runner.teacher.store import TeacherRecord, TeacherStore
from model_runner.training.clock import TrainingClock
from model_runner.training.folds import Split
from model_runner.training.gate import metric_fn

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Teaching:
    """A run's teacher and what it cost: the soft labels of the training rows and unlabelled texts."""

    record: TeacherRecord
    fitted: bool  # this run fine-tuned the teacher
    refit_reason: str  # why it was (re)fitted, or why the stored one was reused
    soft: np.ndarray  # log-probabilities of the training rows, in their order
    unlabelled_texts: list[str]
    unlabelled_soft: np.ndarray
    computed: int  # texts the teacher ran on in this run (after a fit: beyond its own training rows)
    cached: int  # texts whose logits came from the cache
    seconds: float

    def summary(self) -> dict[str, object]:
        return {
            **self.record.meta(),
            "fitted": self.fitted,
            "reason": self.refit_reason,
            "computed": self.computed,
            "cached": self.cached,
            "unlabelled_rows": len(self.unlabelled_texts),
            "seconds": round(self.seconds, 1),
            "score": self.record.params.get("eval_score"),
        }


class TeacherUnavailable(RuntimeError):
    """No teacher weights on this machine: the run trains without one."""


def teach(
    settings: Settings,
    store: TeacherStore,
    task: Task,
    split: Split,
    clock: TrainingClock,
    *,
    run_id: str | None,
    unlabelled: list[str] | None = None,
) -> Teaching:
    """The task's teacher and its logits for ``split``'s training rows and ``unlabelled`` texts."""
    started = time.perf_counter()
    try:
        base = resolve_teacher(settings.teacher_id, settings.teacher_revision, settings.home)
    except EncoderNotFoundError as exc:
        raise TeacherUnavailable(str(exc)) from exc
    keys = [text_key(normalise(t)) for t in split.train_texts]
    extra = [t for t in (unlabelled or []) if t]
    wanted = keys + [text_key(normalise(t)) for t in extra]
    by_key = dict(zip(wanted, [*split.train_texts, *extra], strict=True))
    record = store.latest(task.name, base.model_id, base.revision, split.labels)
    # one read of the cache: it decides whether the teacher is reused and supplies its logits
    found = store.logits(record.teacher_key, list(by_key)) if record is not None else {}
    reason = _refit_reason(settings, record, keys, found)
    model: TweetClassifier | None = None
    fitted = reason is not None
    if fitted:
        clock.progress(0.0, f"fitting the teacher {base.model_id} ({reason})")
        record, model = _fit_and_record(settings, store, task, split, base, keys, clock, run_id)
        found = store.logits(record.teacher_key, list(by_key))
    else:
        reason = f"reused {record.teacher_key}"
    clock.progress(0.85, "teacher logits for the training rows")
    missing = [k for k in by_key if k not in found]
    if missing:
        model = model or _load(record, settings)
        computed = teacher_logits(model, [by_key[k] for k in missing], batch_size=settings.encoder_batch_size)
        store.put_logits(record.teacher_key, missing, computed, in_sample=False)
        found.update(zip(missing, computed, strict=True))
    soft = np.stack([found[k] for k in keys]) if keys else np.zeros((0, len(split.labels)), np.float32)
    extra_soft = np.stack([found[k] for k in wanted[len(keys) :]]) if extra else soft[:0]
    return Teaching(
        record=record,
        fitted=fitted,
        refit_reason=reason,
        soft=soft.astype(np.float32),
        unlabelled_texts=extra,
        unlabelled_soft=extra_soft.astype(np.float32),
        computed=len(missing),
        cached=len(by_key) - len(missing),
        seconds=time.perf_counter() - started,
    )


def _refit_reason(
    settings: Settings, record: TeacherRecord | None, keys: list[bytes], cached: dict[bytes, np.ndarray]
) -> str | None:
    """Why the teacher must be fitted now, or None to reuse ``record`` (``cached``: its logits)."""
    if settings.teacher == "refit":
        return "teacher=refit"
    if record is None:
        return "the task has no teacher yet"
    if not Path(record.path, "config.json").is_file():
        return f"its folder {record.path} is not on this machine"
    unique = set(keys)
    new_share = 1 - len(unique & cached.keys()) / max(len(unique), 1)
    if new_share > settings.teacher_refit_new_share:
        return f"{new_share:.0%} of the training texts are new to it"
    return None


def _fit_and_record(
    settings: Settings,
    store: TeacherStore,
    task: Task,
    split: Split,
    base: ResolvedModel,
    keys: list[bytes],
    clock: TrainingClock,
    run_id: str | None,
) -> tuple[TeacherRecord, TweetClassifier]:
    started = time.perf_counter()
    hp = teacher_hp(len(split.y_train))
    key = teacher_key(base, task.name, split.labels, split.summary.dataset_hash, hp)
    model = fit_teacher(
        base,
        split.train_texts,
        split.y_train,
        split.labels,
        max_length=settings.encoder_max_length,
        seed=settings.seed,
        device=settings.device,
        hp=hp,
        on_step=clock.fit_progress(0.0, 0.7, "fitting"),
        should_stop=clock.stop_requested,
    )
    clock.progress(0.7, "scoring the teacher on the held-out rows")
    folder = settings.home / "teachers" / task.name / key.rsplit("/ft-", 1)[1]
    model.save(folder)
    params = {"hp": hp, "precision": model.meta.get("training_precision", {}).get("precision", "fp32")}
    if len(split.y_eval):
        proba = model.predict_proba(split.eval_texts, batch_size=settings.encoder_batch_size, clean=False)
        metric = metric_fn(task.metric, len(split.labels))
        params |= {
            "eval_metric": task.metric,
            "eval_score": round(float(metric(split.y_eval, proba.argmax(1))), 4),
        }
    clock.progress(0.8, "teacher logits for its own training rows")
    logits = teacher_logits(model, split.train_texts, batch_size=settings.encoder_batch_size)
    record = TeacherRecord(
        teacher_key=key,
        task=task.name,
        base_id=base.model_id,
        base_revision=base.revision,
        labels=list(split.labels),
        data_hash=split.summary.dataset_hash,
        train_rows=len(split.y_train),
        path=str(folder),
        run_id=run_id,
        params=params,
        seconds=round(time.perf_counter() - started, 1),
    )
    store.add(record)
    unique = dict(zip(keys, logits, strict=True))
    store.put_logits(key, list(unique), np.stack(list(unique.values())), in_sample=True)
    log.info("teacher %s fitted in %.0f s (%s)", key, record.seconds, params)
    return record, model


def _load(record: TeacherRecord, settings: Settings) -> TweetClassifier:
    from model_runner.encoder import pick_device

    return TweetClassifier.load(Path(record.path), device=pick_device(settings.device))


def unlabelled_tweets(db, limit: int, exclude: list[str]) -> list[str]:
    """Up to ``limit`` of the inspector's stored tweets, newest first, cleaned like training texts;
    none that is (after cleaning) one of ``exclude`` (the run's training and evaluation texts: the
    frozen evaluation rows must stay unseen, even without their labels)."""
    if limit <= 0:
        return []
    from model_runner.data.cleaning import clean_text

    skip = {text_key(normalise(t)) for t in exclude}
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT text FROM tweets ORDER BY fetched_at DESC, tweet_id DESC LIMIT %s", (limit * 2,)
        ).fetchall()
    out: dict[bytes, str] = {}
    for (text,) in rows:
        cleaned = clean_text(text)
        key = text_key(normalise(cleaned))
        if cleaned and key not in skip and key not in out:
            out[key] = cleaned
        if len(out) >= limit:
            break
    return list(out.values())
