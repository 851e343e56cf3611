"""Serving threads drop while this service's training worker runs, and come back after."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import torch

from model_runner.service.batcher import MicroBatcher
from model_runner.service.state import ServiceState


class _Model:
    labels = ("a", "b")

    def __init__(self):
        self.threads_seen: list[int] = []

    def predict_with_truncation(self, texts, batch_size, clean=True):
        self.threads_seen.append(torch.get_num_threads())
        return np.full((len(texts), 2), 0.5, dtype=np.float32), np.zeros(len(texts), dtype=bool)


def test_each_pass_runs_with_the_threads_asked_for_at_that_time():
    model = _Model()
    served = SimpleNamespace(model=model)
    wanted = [1]
    before = torch.get_num_threads()

    async def go():
        executor = ThreadPoolExecutor(max_workers=1)
        batcher = MicroBatcher(
            "t", lambda: served, executor, max_size=8, max_wait_ms=0, threads=lambda: wanted[0]
        )
        batcher.start()
        await batcher.predict(["x"])
        wanted[0] = 2
        await batcher.predict(["y"])
        await batcher.stop()
        executor.shutdown()

    try:
        asyncio.run(go())
    finally:
        torch.set_num_threads(before)
    assert model.threads_seen == [1, 2]


def test_serving_threads_follow_the_training_worker():
    jobs = SimpleNamespace(worker_running=False)
    settings = SimpleNamespace(inference_threads=2, inference_threads_while_training=1)
    state = SimpleNamespace(settings=settings, jobs=jobs)
    assert ServiceState.serving_threads(state) == 2
    jobs.worker_running = True
    assert ServiceState.serving_threads(state) == 1
    settings.inference_threads_while_training = 0  # 0 = leave the threads alone
    assert ServiceState.serving_threads(state) == 2


def test_worker_running_reflects_live_worker_processes():
    import subprocess
    import sys

    from model_runner.service.supervisor import TrainingSupervisor, WorkerHandle

    supervisor = TrainingSupervisor.__new__(TrainingSupervisor)
    supervisor._procs = {}
    assert not supervisor.worker_running
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    supervisor._procs["job"] = WorkerHandle(proc.pid, popen=proc)
    adopted = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert supervisor.worker_running
        proc.kill()
        proc.wait()
        assert not supervisor.worker_running
        # a worker adopted after a restart is known by pid and start time only
        supervisor._procs["adopted"] = WorkerHandle(adopted.pid)
        assert supervisor.worker_running
    finally:
        adopted.kill()
        adopted.wait()
    assert not supervisor.worker_running
