"""Stratified k-fold cross-validation of every candidate, folds run in parallel.

On CPU the (candidate, fold) jobs go to a process pool (spawned, so no forked OpenMP state) with the
cores split between workers; on CUDA several jobs share the GPU from a thread pool; with one worker
they run in this process. Each job only sees its own fold's training rows: the evaluation split
never reaches this module at all.
"""

from __future__ import annotations

import inspect
import logging
import os
import queue as queue_mod
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np
import torch
from tqdm.auto import tqdm

from model_runner.evaluation import compute_metrics
from model_runner.training.clock import FitStep
from model_runner.training.fitting import fit_candidate, predict_candidate
from model_runner.training.folds import CVData, FoldJob, fold_jobs, stratified_folds
from model_runner.training.progress_bar import PlainLines
from model_runner.training.search_space import Candidate

__all__ = ["CVData", "CandidateResult", "FoldResult", "run_cv", "stratified_folds"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoldResult:
    candidate: Candidate
    fold: int
    metrics: dict[str, float]
    seconds: float


@dataclass(frozen=True)
class CandidateResult:
    candidate: Candidate
    folds: tuple[FoldResult, ...] = ()

    def scores(self, metric: str) -> np.ndarray:
        return np.array([f.metrics[metric] for f in self.folds])

    def mean(self, metric: str) -> float:
        return float(self.scores(metric).mean())

    def std(self, metric: str) -> float:
        return float(self.scores(metric).std(ddof=1)) if len(self.folds) > 1 else 0.0


# --- worker side -----------------------------------------------------------------------------------
_DATA: CVData | None = None
_EVENTS = None


def _init_worker(data: CVData, events, threads: int, spawned: bool = False) -> None:
    global _DATA, _EVENTS
    _DATA, _EVENTS = data, events
    torch.set_num_threads(threads)
    if spawned and not sys.stderr.isatty():
        # a fold process writes to the driver's stderr file (a job's log) directly: its progress
        # bars (model loading) as plain lines too
        sys.stderr = PlainLines(sys.stderr)


# a running fold tells the driver how far it is at most this often (and at every epoch's end)
EVENT_EVERY_S = 2.0


def _run_fold(job: FoldJob) -> FoldResult:
    assert _DATA is not None
    started = time.perf_counter()
    last = [float("-inf")]

    def on_step(step: FitStep) -> None:
        now = time.perf_counter()
        if _EVENTS is not None and (step.epoch_done or now - last[0] >= EVENT_EVERY_S):
            last[0] = now
            _EVENTS.put((job.candidate, job.fold, step.fraction, step.describe()))

    fitted = fit_candidate(job.candidate, _DATA, job.train_idx, in_cv=True, on_step=on_step)
    proba = predict_candidate(fitted, job.candidate, _DATA, job.val_idx)
    metrics = compute_metrics(_DATA.y[job.val_idx], proba, _DATA.labels)
    scores = {k: float(metrics[k]) for k in ("macro_recall", "macro_f1", "accuracy")}
    return FoldResult(job.candidate, job.fold, scores, time.perf_counter() - started)


# --- driver side -----------------------------------------------------------------------------------
def _executor(workers: int, data: CVData, events) -> Executor | None:
    if workers <= 1:
        _init_worker(data, events, threads=max(1, os.cpu_count() or 1))
        return None
    if data.device == "cuda":
        _init_worker(data, events, threads=max(1, os.cpu_count() or 1))
        return ThreadPoolExecutor(workers)
    threads = max(1, (os.cpu_count() or 1) // workers)
    return ProcessPoolExecutor(
        workers,
        mp_context=get_context("spawn"),
        initializer=_init_worker,
        initargs=(data, events, threads, True),
    )


def run_cv(
    candidates: Sequence[Candidate],
    data: CVData,
    *,
    folds: int,
    workers: int = 1,
    should_stop: Callable[[], bool] | None = None,
    on_progress: Callable[..., None] | None = None,
) -> list[CandidateResult]:
    """Every candidate's score on every fold of the training rows (``fold_jobs``), in candidate order.

    ``on_progress(fraction)`` or ``on_progress(fraction, detail)`` hears each finished fold and, every
    few seconds, how far the running folds are (epochs and batches of the encoder adapters)."""
    jobs = fold_jobs(candidates, data, folds)
    done_folds: dict[Candidate, list[FoldResult]] = {c: [] for c in candidates}
    bar = tqdm(total=len(jobs), desc="cross-validation", unit="fold")
    running: dict[tuple[Candidate, int], float] = {}  # (candidate, fold) -> share of it done
    report = _progress_reporter(on_progress)
    fold_counts = {c: sum(1 for j in jobs if j.candidate == c) for c in candidates}

    def results() -> list[CandidateResult]:
        return [CandidateResult(c, tuple(fs)) for c, fs in done_folds.items()]

    def where(detail: str) -> None:
        report(
            min((bar.n + sum(running.values())) / len(jobs), 1.0), f"{bar.n}/{len(jobs)} folds done; {detail}"
        )

    def record(res: FoldResult) -> None:
        done_folds[res.candidate].append(res)
        running.pop((res.candidate, res.fold), None)
        bar.update(1)
        bar.set_postfix_str(f"{res.candidate.name} fold {res.fold + 1}: {res.metrics['macro_recall']:.3f}")
        name = f"{res.candidate.adapter} fold {res.fold + 1}/{fold_counts[res.candidate]}"
        where(f"{name}: macro recall {res.metrics['macro_recall']:.3f}")

    def event(candidate: Candidate, fold: int, fraction: float, text: str) -> None:
        running[(candidate, fold)] = max(running.get((candidate, fold), 0.0), min(fraction, 1.0))
        bar.set_postfix_str(f"{candidate.adapter} fold {fold + 1}: {text}")
        where(f"{candidate.adapter} fold {fold + 1}/{fold_counts[candidate]}: {text}")

    manager = get_context("spawn").Manager() if workers > 1 and data.device != "cuda" else None
    events = manager.Queue() if manager else (queue_mod.Queue() if workers > 1 else _Direct(event))
    pool = _executor(workers, data, events)
    try:
        if pool is None:
            for job in jobs:
                if should_stop and should_stop():
                    raise InterruptedError("training cancelled")
                record(_run_fold(job))
            return results()
        pending = {pool.submit(_run_fold, job) for job in jobs}
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            _drain(events, event)
            for fut in done:
                record(fut.result())
            if should_stop and should_stop():
                for fut in pending:
                    fut.cancel()
                raise InterruptedError("training cancelled")
        return results()
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if manager is not None:
            manager.shutdown()


class _Direct:
    """In-process folds: their events reach the driver at once, as a queue's ``put``."""

    def __init__(self, handle: Callable[..., None]):
        self.put = lambda item: handle(*item)


def _progress_reporter(on_progress: Callable[..., None] | None) -> Callable[[float, str], None]:
    """``on_progress`` as a ``(fraction, detail)`` callback, whichever of the two shapes it takes."""
    if on_progress is None:
        return lambda fraction, detail: None
    try:
        inspect.signature(on_progress).bind(0.0, "")
    except (TypeError, ValueError):
        return lambda fraction, detail: on_progress(fraction)
    return on_progress


def _drain(events, handle: Callable[..., None]) -> None:
    try:
        while True:
            handle(*events.get_nowait())
    except queue_mod.Empty:
        pass
    except (EOFError, OSError):  # manager gone during shutdown
        pass
