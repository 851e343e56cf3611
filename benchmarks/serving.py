"""Serving throughput and latency, side by side on the same 1,000 validation tweets and base model.

(a) one message at a time through the fp32 model (tokenizer + forward per text: the naive service);
(b) the ``transformers`` text-classification pipeline, batched, fp32;
(c) our serving path in process: 32 concurrent requests of 32 texts through the micro-batcher, for the
    served int8 model and for fp32;
(d) ``model-runner serve`` under uvicorn in its own process, 8 concurrent HTTP clients, batches of 32
    (the service serves int8; ``BENCH_SERVING=fp32`` makes it serve fp32, i.e. the ONNX Runtime twin);
(e) single-message HTTP requests one after another (an idle service): p50/p99 latency.
The service runs as deployed, result cache on: (d) and (e) send texts it has not seen, and a second
round of (d) with the same texts shows what the cache gives when tweets repeat (retweets).
Ratios are against (a). The service's peak RSS is its VmHWM. The champion is the real base model with a
linear head (its quality does not matter here), registered in a scratch MLflow store and Postgres.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import torch

from benchmarks.common import load_texts, scratch_database, table
from benchmarks.quantize import LABELS, _base_classifier

N_TEXTS = 1000
CLIENTS = 8
BATCH = 32
SINGLE_REQUESTS = 300
TOKEN = "bench-token"  # the scratch service's admin token; every route but health needs a token
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _naive_fp32(model, texts: list[str]) -> float:
    """What a first version does: one tokenizer call and one forward pass per message."""
    start = time.perf_counter()
    with torch.inference_mode():
        for text in texts:
            enc = model.tokenizer(text, truncation=True, max_length=model.max_length, return_tensors="pt")
            torch.softmax(model(enc["input_ids"], enc["attention_mask"]), dim=-1)
    return len(texts) / (time.perf_counter() - start)


def _hf_pipeline(texts: list[str]) -> float:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    from model_runner.encoder import resolve_model
    from model_runner.settings import Settings

    path = resolve_model(Settings().encoder_id).path
    clf = AutoModelForSequenceClassification.from_pretrained(path, num_labels=3)
    pipe = pipeline(
        "text-classification", model=clf, tokenizer=AutoTokenizer.from_pretrained(path), device=-1
    )
    start = time.perf_counter()
    pipe(texts, batch_size=BATCH, truncation=True, max_length=128)
    return len(texts) / (time.perf_counter() - start)


def _in_process(served, texts: list[str]) -> float:
    from concurrent.futures import ThreadPoolExecutor

    from model_runner.service.batcher import MicroBatcher
    from model_runner.settings import Settings

    async def go() -> float:
        executor = ThreadPoolExecutor(max_workers=1)
        cfg = Settings()
        batcher = MicroBatcher(
            "sentiment",
            lambda: served,
            executor,
            max_size=cfg.batch_max_size,
            max_wait_ms=cfg.batch_max_wait_ms,
            pass_size=cfg.batch_pass_size,
        )
        batcher.start()
        chunks = [texts[i : i + BATCH] for i in range(0, len(texts), BATCH)]
        start = time.perf_counter()
        await asyncio.gather(*[batcher.predict(c) for c in chunks])
        elapsed = time.perf_counter() - start
        await batcher.stop()
        executor.shutdown()
        return len(texts) / elapsed

    return asyncio.run(go())


def _register(model, settings, serving: str) -> None:
    import mlflow

    from model_runner.registry.gate import decide
    from model_runner.training import tracking
    from model_runner.wiring import Components

    model.meta.update({"task": "sentiment", "serving": serving, "adapter": "linear"})
    components = Components(settings)
    registry = components.registry
    with (
        tempfile.TemporaryDirectory() as tmp,
        tracking.training_run(settings, components.mlflow, "bench", {}),
    ):
        model.save(Path(tmp) / "model")
        # the service loads only versions the promotion gate passed: record a passing first-model gate
        gate = decide(0.5, None, tolerance=settings.gate_tolerance, metric="macro_recall")
        version = registry.log_and_register(
            Path(tmp) / "model", task="sentiment", input_example=["hi"], tags=gate.as_tags()
        )
    registry.promote("sentiment", version.version)
    mlflow.end_run()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _inference_body(chunk: list[str]) -> dict:
    return {"messages": chunk}


def _http_clients(
    url: str,
    texts: list[str],
    route: str = "/inference",
    body: Callable[[list[str]], dict] = _inference_body,
    headers: dict[str, str] | None = None,
) -> tuple[float, int]:
    """CLIENTS threads post the texts in batches of BATCH; texts/s over the whole load, and errors.
    ``route``, ``body`` and ``headers`` (default: our token) let the peer benchmark drive another
    server with the very same load."""
    chunks = [texts[i : i + BATCH] for i in range(0, len(texts), BATCH)]
    errors = [0]

    def worker(mine):
        with httpx.Client(base_url=url, timeout=60, headers=AUTH if headers is None else headers) as c:
            for chunk in mine:
                if c.post(route, json=body(chunk)).status_code != 200:
                    errors[0] += 1

    threads = [threading.Thread(target=worker, args=(chunks[i::CLIENTS],)) for i in range(CLIENTS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(texts) / (time.perf_counter() - start), errors[0]


def _latency(url: str, texts: list[str]) -> tuple[float, float]:
    times = []
    with httpx.Client(base_url=url, timeout=30, headers=AUTH) as c:
        for text in texts:
            start = time.perf_counter()
            c.post("/inference", json={"messages": [text]})
            times.append(time.perf_counter() - start)
    return float(np.percentile(times, 50) * 1000), float(np.percentile(times, 99) * 1000)


def _latency_during_training(url: str, texts: list[str]) -> tuple[float, float]:
    """Single-message latency while a training job (its own process) embeds and cross-validates."""
    response = httpx.post(url + "/train", json={"adapters": ["linear", "mlp"]}, headers=AUTH, timeout=30)
    if response.status_code != 202:
        raise RuntimeError(f"POST /train answered {response.status_code}: {response.text}")
    job_id = response.json()["job_id"]
    try:
        while httpx.get(f"{url}/train/{job_id}", headers=AUTH).json()["stage"] in (
            "queued",
            "starting",
            "data",
        ):
            time.sleep(0.5)  # wait until the worker really computes
        return _latency(url, texts)
    finally:
        httpx.post(f"{url}/train/{job_id}/cancel", headers=AUTH, timeout=30)


@contextmanager
def running_service(model, serving: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, int]]:
    """``model-runner serve`` in its own process, ``model`` registered as the champion in a scratch
    MLflow store and Postgres; yields its URL and pid once it is ready. ``env``: extra settings."""
    from model_runner.settings import Settings

    with scratch_database() as db_url, tempfile.TemporaryDirectory(prefix="tp-serve-bench-") as home:
        settings = Settings(home=Path(home), database_url=db_url, tasks="sentiment")
        _register(model, settings, serving)
        port = _free_port()
        full_env = dict(
            os.environ,
            TWEETPULSE_HOME=home,
            TWEETPULSE_API_TOKEN=TOKEN,
            DATABASE_URL=db_url,
            TWEETPULSE_TASKS="sentiment",
            TWEETPULSE_PORT=str(port),
            TWEETPULSE_MLFLOW_TRACKING_URI=settings.tracking_uri(),
            **(env or {}),
        )
        log = Path(home) / "serve.log"
        with log.open("w") as out:
            server = subprocess.Popen(
                [sys.executable, "-m", "model_runner.cli", "serve"],
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            try:
                wait_ready(url + "/health/ready", server, "the service")
            except RuntimeError as exc:  # the service's own words say why
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                raise RuntimeError(f"{exc}; last lines of its log:\n{tail}") from exc
            yield url, server.pid
        finally:
            server.terminate()
            server.wait(timeout=30)


def wait_ready(url: str, process: subprocess.Popen, what: str, timeout_s: float = 180) -> None:
    """Poll ``url`` until it answers 200; fail early when ``process`` has exited."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} before it was ready")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{what} did not become ready in {timeout_s:.0f} s")


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _ratio(value: float, base: float) -> tuple[str, str]:
    return f"{value:.1f}", f"{value / base:.2f}x"


def run(limit: int | None = None, serving: str | None = None) -> None:
    # what the HTTP service serves: int8 (torch) by default; BENCH_SERVING=fp32 serves the ONNX twin
    serving = serving or os.environ.get("BENCH_SERVING", "int8")
    from model_runner.modeling.onnx_backend import to_onnx_runtime
    from model_runner.modeling.quantize import quantize_int8
    from model_runner.service.served import ServedModel

    n = limit or N_TEXTS
    pool = load_texts()  # 2,000 validation tweets: (d), (e) and (f) each get texts the service has not seen
    texts, idle_texts, busy_texts = pool[:n], pool[n : n + SINGLE_REQUESTS], pool[-SINGLE_REQUESTS:]
    model = _base_classifier(max_length=128)
    torch.manual_seed(0)
    naive = _naive_fp32(model, texts)
    pipe = _hf_pipeline(texts)
    as_served = {
        "fp32": model,
        "fp32-onnx": to_onnx_runtime(model, int8=False),
        "int8": quantize_int8(model),
    }
    inproc = {
        name: _in_process(ServedModel("sentiment", "bench", "1", m, name == "int8", {}, None, "bench"), texts)
        for name, m in as_served.items()
    }

    with running_service(model, serving) as (url, pid):
        p50, p99 = _latency(url, idle_texts)  # idle first
        http, errors = _http_clients(url, texts)
        repeat, repeat_errors = _http_clients(url, texts)  # the same texts again: cache hits
        rss = _peak_rss_mb(pid)
        t50, t99 = _latency_during_training(url, busy_texts)

    rows = [
        ("(a) one at a time, fp32", f"{naive:.1f}", "1.00x", ""),
        ("(b) transformers pipeline, batched fp32", f"{pipe:.1f}", f"{pipe / naive:.2f}x", ""),
        ("(c) our path in-process, int8", f"{inproc['int8']:.1f}", f"{inproc['int8'] / naive:.2f}x", ">= 6x"),
        ("(c') our path in-process, fp32 ONNX Runtime", *_ratio(inproc["fp32-onnx"], naive), ""),
        ("(c'') our path in-process, fp32 torch", *_ratio(inproc["fp32"], naive), ""),
        (f"(d) HTTP, {CLIENTS} clients x {BATCH}, {serving}", f"{http:.1f}", f"{http / naive:.2f}x", ">= 4x"),
        ("(d*) the same texts again (result cache)", *_ratio(repeat, naive), ""),
    ]
    print(f"{len(texts)} validation tweets, all-MiniLM-L6-v2, torch threads {torch.get_num_threads()}")
    print(table(rows, ("path", "texts/s", "vs (a)", "target")))
    print(f"(e) single-message HTTP, idle: p50 {p50:.1f} ms, p99 {p99:.1f} ms (target p99 <= 30 ms)")
    print(f"(f) the same while a training job runs in its worker process: p50 {t50:.1f} ms, p99 {t99:.1f} ms")
    print(f"service peak RSS {rss:.0f} MB (target <= 1500 MB); HTTP errors {errors + repeat_errors}")
    print(f"served model: {serving}; labels {LABELS}")
