"""Served-traffic recorder: what ``/inference`` answered, sampled into Postgres off the request path.

``record`` is all a request pays: a few list appends under a lock. A bounded in-memory queue takes the
samples; a background thread hashes them (the embedding-cache key of the text), writes each batch
with one ``COPY``, deletes rows past the retention period once an hour and refreshes the gauges.
When the queue is full or Postgres is away, samples are dropped and counted
(``tweetpulse_served_samples_dropped{reason}``); nothing ever raises into a request.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from model_runner.db import Database
from model_runner.monitoring.metrics import ServedMetrics
from model_runner.monitoring.rolling import RollingShares, total_variation
from model_runner.monitoring.store import ServedRow, delete_expired, insert_rows
from model_runner.settings import Settings
from model_runner.store.keys import normalise, text_key

log = logging.getLogger(__name__)

# (task, model name, model version, text, label, confidence, served at)
_Sample = tuple[str, str, str, str, str, float, datetime]


class ServedRecorder:
    @property
    def db(self) -> Database:
        return self._db() if callable(self._db) else self._db

    def __init__(
        self,
        settings: Settings,
        db: Database | Callable[[], Database],
        registry: CollectorRegistry,
        *,
        queue_size: int = 10_000,
        batch_size: int = 1000,
        flush_interval_s: float = 1.0,
        retention_interval_s: float = 3600.0,
        window: int = 1000,
        replica: str | None = None,
        rng: random.Random | None = None,
    ):
        self.settings = settings
        # a callable: the service's database is opened (and migrated) on first use, not at start-up
        self._db = db
        self.metrics = ServedMetrics(registry)
        self.rate = float(settings.served_sample_rate)
        self.store_text = bool(settings.served_store_text)
        self.retention_days = float(settings.served_retention_days)
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.retention_interval_s = retention_interval_s
        self.replica = replica or socket.gethostname()
        self._rng = rng or random.Random()
        self._queue: deque[_Sample] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rolling = RollingShares(window)
        self._reference: dict[str, dict[str, float]] = {}
        self._reference_tried: set[str] = set()  # tasks looked up since the last maintenance
        self._last_retention: float | None = None  # monotonic; None: at the first cycle
        self._flush_lock = threading.Lock()  # one flush at a time (the thread, or a test's flush_now)

    # --- the request path ------------------------------------------------------------------------
    def record(
        self,
        task: str,
        model_name: str,
        model_version: str,
        texts: Sequence[str],
        labels: Sequence[str],
        confidences: Sequence[float],
        *,
        classes: Sequence[str] = (),
    ) -> int:
        """Queue a sample of these predictions; returns how many were queued. Never raises."""
        try:
            return self._record(task, model_name, model_version, texts, labels, confidences, classes)
        except Exception:  # monitoring must never fail a request
            log.exception("served-traffic recorder failed to queue a sample")
            return 0

    def _record(self, task, model_name, model_version, texts, labels, confidences, classes) -> int:
        now = datetime.now(UTC)
        if self.rate >= 1.0:
            picked = range(len(texts))
        elif self.rate <= 0.0:
            picked = ()
        else:
            rnd = self._rng.random
            picked = [i for i in range(len(texts)) if rnd() < self.rate]
        dropped = 0
        with self._lock:
            self._rolling.add(task, labels, confidences, classes)
            room = self.queue_size - len(self._queue)
            for n, i in enumerate(picked):
                if n >= room:
                    dropped = len(picked) - n
                    break
                self._queue.append(
                    (task, model_name, model_version, texts[i], labels[i], float(confidences[i]), now)
                )
            pending = len(self._queue)
        if dropped:
            self.metrics.dropped.labels("queue_full").inc(dropped)
        if pending >= self.batch_size:
            self._wake.set()
        return len(picked) - dropped

    # --- life cycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="served-recorder", daemon=True)
        self._thread.start()

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Flush what is queued (bounded by ``timeout_s``), then end the thread."""
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        self._wake.set()
        await asyncio.to_thread(thread.join, timeout_s)
        self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            self._cycle()
        self._cycle(final=True)

    def _cycle(self, final: bool = False) -> None:
        try:
            while self.flush_now() >= self.batch_size:
                pass
            last = self._last_retention
            if not final and (last is None or time.monotonic() - last >= self.retention_interval_s):
                self.maintain()
            self.refresh_gauges()
        except Exception:  # the thread keeps running whatever happens
            log.exception("served-traffic recorder cycle failed")

    # --- the flusher -------------------------------------------------------------------------------
    def flush_now(self) -> int:
        """Write up to one batch of queued samples; returns how many left the queue (stored or dropped)."""
        with self._flush_lock:
            with self._lock:
                n = min(len(self._queue), self.batch_size)
                batch = [self._queue.popleft() for _ in range(n)]
                self.metrics.pending.set(len(self._queue))
            if not batch:
                return 0
            rows = [self._row(s) for s in batch]
            try:
                insert_rows(self.db, rows)
            except Exception as exc:
                self.metrics.dropped.labels("database").inc(len(rows))
                log.warning("dropped %d served-traffic samples: %s", len(rows), type(exc).__name__)
                return len(rows)
            per_task: dict[str, int] = {}
            for r in rows:
                per_task[r.task] = per_task.get(r.task, 0) + 1
            for task, count in per_task.items():
                self.metrics.recorded.labels(task).inc(count)
            return len(rows)

    def _row(self, sample: _Sample) -> ServedRow:
        task, name, version, text, label, confidence, served_at = sample
        cleaned = normalise(text)
        return ServedRow(
            task=task,
            text_hash=text_key(cleaned),
            text=cleaned if self.store_text else None,
            model_name=name,
            model_version=version,
            label=label,
            confidence=confidence,
            served_at=served_at,
            replica=self.replica,
        )

    def maintain(self) -> int:
        """Retention, and the training class shares the drift gauge compares with. Returns rows deleted."""
        self._last_retention = time.monotonic()
        try:
            deleted = delete_expired(self.db, self.retention_days)
        except Exception as exc:
            log.warning("served-traffic retention failed: %s", type(exc).__name__)
            return 0
        self.metrics.deleted.inc(deleted)
        self._reference_tried.clear()  # the training data may have changed: read it again
        return deleted

    def _load_reference(self, task: str) -> None:
        from model_runner.store.examples import ExampleStore

        self._reference_tried.add(task)
        try:
            counts = ExampleStore(self.db, task).label_counts()
        except Exception:
            return
        total = sum(counts.values())
        if total:
            self._reference[task] = {k: v / total for k, v in counts.items()}

    def refresh_gauges(self) -> None:
        with self._lock:
            snap = self._rolling.snapshot()
            self.metrics.pending.set(len(self._queue))
        for task, (n, shares, mean_conf) in snap.items():
            if not n:
                continue
            if task not in self._reference_tried:
                self._load_reference(task)
            self.metrics.window_size.labels(task).set(n)
            for label, share in shares.items():
                self.metrics.class_share.labels(task, label).set(share)
            if mean_conf is not None:
                self.metrics.mean_confidence.labels(task).set(mean_conf)
            reference = self._reference.get(task)
            if reference:
                self.metrics.class_distance.labels(task).set(total_variation(shares, reference))

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)
