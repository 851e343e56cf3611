"""Prometheus metrics of one app instance (its own registry, so several apps can live in one process)."""

from __future__ import annotations

import time

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from starlette.types import ASGIApp, Receive, Scope, Send

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # the process's CPU, memory, open files, GC and Python version (process_*, python_*), as the
        # default registry would have them: one collector each, shared by every app of this process
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            r.register(collector)
        self.requests = Counter(
            "tweetpulse_http_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "tweetpulse_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "tweetpulse_inference_batch_size",
            "Texts the model ran per micro-batch (repeats and cached texts excluded)",
            ["task"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.texts = Counter("tweetpulse_inference_texts", "Texts classified", ["task"], registry=r)
        self.reused = Counter(
            "tweetpulse_inference_reused_texts",
            "Texts answered without a forward pass: seen before (result cache) or repeated in the batch",
            ["task"],
            registry=r,
        )
        self.model_info = Gauge(
            "tweetpulse_served_model_info",
            "Served model (value 1)",
            ["task", "name", "version", "serving"],
            registry=r,
        )
        self.runtime_info = Gauge(
            "tweetpulse_serving_runtime_info",
            "Runtime serving the task's model, as chosen at load (value 1)",
            ["task", "runtime", "precision"],
            registry=r,
        )
        self.runtime_speed = Gauge(
            "tweetpulse_runtime_texts_per_second",
            "Batched throughput each runtime within the accuracy gate measured at the last load",
            ["task", "runtime"],
            registry=r,
        )
        self.reloads = Counter("tweetpulse_model_reloads", "Model reloads", ["task", "outcome"], registry=r)
        self.jobs = Gauge(
            "tweetpulse_training_jobs", "Training jobs by state (this service)", ["state"], registry=r
        )
        for state in JOB_STATES:
            self.jobs.labels(state).set(0)
        self.queue_depth = Gauge(
            "tweetpulse_training_queue_depth",
            "Training jobs queued in Postgres that no train process has claimed yet",
            registry=r,
        )
        self.loaded_at = Gauge(
            "tweetpulse_served_model_loaded_timestamp_seconds",
            "When the served model of the task was trained (Unix time; when it was loaded, for models"
            " that do not record it): the model's age is time() minus this",
            ["task"],
            registry=r,
        )
        self.role = Gauge(
            "tweetpulse_process_role_info",
            "What this process does (serve, train or all)",
            ["role"],
            registry=r,
        )

    def observe_batch(self, task: str, texts: int, computed: int) -> None:
        if computed:
            self.batch_size.labels(task).observe(computed)
        self.texts.labels(task).inc(texts)
        self.reused.labels(task).inc(texts - computed)

    def served(self, model) -> None:
        # one series per task: drop the previous version's before setting the new one
        for gauge in (self.model_info, self.runtime_info, self.runtime_speed):
            for labels in list(gauge._metrics):
                if labels[0] == model.task:
                    gauge.remove(*labels)
        born = getattr(model, "trained_at", None) or getattr(model, "loaded_at", None)
        self.loaded_at.labels(model.task).set(born.timestamp() if born is not None else time.time())
        precision = getattr(model, "precision", "int8" if model.quantized else "fp32")
        self.model_info.labels(model.task, model.name, model.version, precision).set(1)
        runtime = getattr(model, "runtime_name", "torch-int8" if model.quantized else "torch")
        self.runtime_info.labels(model.task, runtime, precision).set(1)
        choice = getattr(model, "choice", None)
        for candidate in choice.candidates if choice is not None else ():
            if candidate.texts_per_s is not None:
                self.runtime_speed.labels(model.task, candidate.name).set(candidate.texts_per_s)

    def job_counts(self, counts: dict[str, int]) -> None:
        for state in JOB_STATES:
            self.jobs.labels(state).set(counts.get(state, 0))
        self.queue_depth.set(counts.get("unclaimed", 0))


class MetricsMiddleware:
    """Counts and times every request by its route template (``/train/{job_id}``, not the raw path)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, replica: str | None = None):
        self.app = app
        self.metrics = metrics
        # every answer names the process that gave it: behind a balancer, which replica answered
        self._replica = [(b"x-tweetpulse-replica", replica.encode())] if replica else []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [500]

        async def _send(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                if self._replica:
                    message = {**message, "headers": [*message.get("headers", []), *self._replica]}
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, _send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - start)
            self.metrics.requests.labels(method, template, str(status[0])).inc()
