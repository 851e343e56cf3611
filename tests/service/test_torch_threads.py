"""torch runs only on the inference thread or on threads that end with their job.

A live pool thread that once ran torch keeps an OpenMP worker team; on a 2-core machine that makes
every serving pass slower (models.in_own_thread says why and by how much).
"""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

import pytest

from model_runner.service.model_manager import ModelManager, in_own_thread


def _wait_dead(thread: threading.Thread, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    return not thread.is_alive()


def test_in_own_thread_runs_off_the_loop_and_the_thread_ends():
    seen = {}

    def job(x, *, y):
        seen["thread"] = threading.current_thread()
        return x + y

    async def go():
        return await in_own_thread(job, 1, y=2), threading.current_thread()

    result, loop_thread = asyncio.run(go())
    assert result == 3 and seen["thread"] is not loop_thread
    assert _wait_dead(seen["thread"])


def test_in_own_thread_passes_errors_through():
    def boom():
        raise ValueError("bad model")

    with pytest.raises(ValueError, match="bad model"):
        asyncio.run(in_own_thread(boom))


def test_a_reload_loads_on_a_thread_that_does_not_outlive_it():
    settings = SimpleNamespace(
        task_list=lambda: ["t"],
        batch_max_size=8,
        batch_pass_size=8,
        batch_max_wait_ms=0,
        inference_cache_size=0,
        max_queued_texts=0,
        max_queue_wait_s=0,
        reload_timeout_s=60,
    )
    loaded = {}

    def loader(settings, task, unless_serving=None):
        loaded["thread"] = threading.current_thread()
        return SimpleNamespace(task=task, version="1", model=None, tag=f"{task}/1")

    async def go():
        manager = ModelManager(settings, executor=None)
        return await manager.reload("t", loader=loader)

    result = asyncio.run(go())
    assert result.reloaded and result.version == "1"
    assert loaded["thread"].name.startswith("torch-oneoff")
    assert _wait_dead(loaded["thread"])


def test_similar_encodes_on_the_inference_thread(live, monkeypatch):
    encoder = live.state.components.encoder
    threads = []
    original = encoder.encode

    def spy(texts, *args, **kwargs):
        threads.append(threading.current_thread().name)
        return original(texts, *args, **kwargs)

    monkeypatch.setattr(encoder, "encode", spy)
    with live.client() as c:
        r = c.post("/similar", json={"text": "great phone, love it", "k": 2})
    assert r.status_code == 200, r.text
    assert threads and all(name.startswith("inference") for name in threads)
