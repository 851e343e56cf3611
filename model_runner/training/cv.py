"""Stratified k-fold cross-validation of every candidate, folds run in parallel.

On CPU the (candidate, fold) jobs go to a process pool (spawned, so no forked OpenMP state) with the
cores split between workers; on CUDA several jobs share the GPU from a thread pool; with one worker
they run in this process. Each job only sees its own fold's training rows: the evaluation split
never reaches this module at all.
"""

from __future__ import annotations

import logging
import os
import queue as queue_mod
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np
import torch
from tqdm.auto import tqdm

from model_runner.evaluation import compute_metrics
from model_runner.training.fitting import fit_candidate, predict_candidate
from model_runner.training.folds import CVData, FoldJob, fold_jobs, stratified_folds
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


def _init_worker(data: CVData, events, threads: int) -> None:
    global _DATA, _EVENTS
    _DATA, _EVENTS = data, events
    torch.set_num_threads(threads)


def _run_fold(job: FoldJob) -> FoldResult:
    assert _DATA is not None
    started = time.perf_counter()

    def on_epoch(epoch: int, epochs: int) -> None:
        if _EVENTS is not None:
            _EVENTS.put((job.candidate.name, job.fold, epoch, epochs))

    fitted = fit_candidate(job.candidate, _DATA, job.train_idx, in_cv=True, on_epoch=on_epoch)
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
        workers, mp_context=get_context("spawn"), initializer=_init_worker, initargs=(data, events, threads)
    )


def run_cv(
    candidates: Sequence[Candidate],
    data: CVData,
    *,
    folds: int,
    workers: int = 1,
    should_stop: Callable[[], bool] | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> list[CandidateResult]:
    """Every candidate's score on every fold of the training rows (``fold_jobs``), in candidate order."""
    jobs = fold_jobs(candidates, data, folds)
    done_folds: dict[Candidate, list[FoldResult]] = {c: [] for c in candidates}
    bar = tqdm(total=len(jobs), desc="cross-validation", unit="fold")

    def results() -> list[CandidateResult]:
        return [CandidateResult(c, tuple(fs)) for c, fs in done_folds.items()]

    def record(res: FoldResult) -> None:
        done_folds[res.candidate].append(res)
        bar.update(1)
        bar.set_postfix_str(f"{res.candidate.name} fold {res.fold + 1}: {res.metrics['macro_recall']:.3f}")
        if on_progress:
            on_progress(bar.n / len(jobs))

    manager = get_context("spawn").Manager() if workers > 1 and data.device != "cuda" else None
    events = manager.Queue() if manager else queue_mod.Queue()
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
            _drain(events, bar)
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


def _drain(events, bar: tqdm) -> None:
    try:
        while True:
            name, fold, epoch, epochs = events.get_nowait()
            bar.set_postfix_str(f"{name} fold {fold + 1} epoch {epoch}/{epochs}")
    except queue_mod.Empty:
        pass
    except (EOFError, OSError):  # manager gone during shutdown
        pass
