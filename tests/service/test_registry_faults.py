"""Registry faults at reload, against uvicorn on loopback, a real MLflow store and real Postgres.

A champion alias moved to a version that never passed the gate, weights edited with a regenerated
``checksums.json`` and a version without a manifest digest are refused, and the old model keeps serving;
an MLflow server that accepts connections and never answers neither blocks ``/inference`` nor holds the
reload lock past the reload deadline; a load that finishes after its deadline is never swapped in.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import httpx
import mlflow
import pytest
import torch
from safetensors.torch import load_file, save_file

from model_runner.jobs.champion import registry_for
from model_runner.modeling.classifier import write_checksums
from model_runner.registry import MANIFEST_TAG, decide
from model_runner.service.model_manager import ModelManager
from model_runner.settings import Settings
from tests.registry.conftest import Store, active_run
from tests.service.conftest import serve
from tests.training.conftest import make_rows

FIXED = [r["text"] for r in make_rows(4, seed=11)]
HTTP_ENV = (
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
)


def _register_copy_of_champion(settings, tmp_path: Path, *, gated: bool) -> str:
    """Register the served champion's files again as a new version and point ``champion`` at it by hand."""
    registry = registry_for(settings)
    champion = registry.champion("sentiment")
    folder = registry.download_verified("sentiment", champion, dst=tmp_path / "copy")
    store = Store(
        settings.tracking_uri(),
        mlflow.get_experiment_by_name(settings.mlflow_experiment).experiment_id,
        tmp_path,
    )
    with active_run(store):
        version = registry.log_and_register(folder, task="sentiment", input_example=FIXED[:2]).version
    if gated:
        registry.set_tags(
            "sentiment", version, decide(0.9, 0.5, tolerance=0.01, metric="macro_recall").as_tags()
        )
    registry.promote("sentiment", version)
    return version


def _stored_folder(settings, version: str) -> Path:
    client = mlflow.MlflowClient(settings.tracking_uri())
    root = Path(urlparse(client.get_model_version_download_uri("tweetpulse-sentiment", version)).path)
    return next(p.parent for p in root.rglob("tweetpulse.json"))


def _outputs(server) -> list[dict]:
    with server.client(headers=server.admin()) as c:
        r = c.post("/inference", json={"messages": FIXED})
        assert r.status_code == 200, r.text
        return r.json()["predictions"]


@pytest.mark.parametrize("fault", ["ungated champion", "regenerated checksums", "no digest tag"])
def test_a_tampered_registry_is_refused_at_reload_and_the_old_model_keeps_serving(
    fresh_settings, tmp_path, fault
):
    with serve(fresh_settings) as server:
        before = _outputs(server)
        version = _register_copy_of_champion(fresh_settings, tmp_path, gated=fault != "ungated champion")
        assert version == "2"
        if fault == "regenerated checksums":
            folder = _stored_folder(fresh_settings, version)
            head = load_file(folder / "head.safetensors")
            save_file({k: torch.flip(v, dims=[0]) for k, v in head.items()}, folder / "head.safetensors")
            write_checksums(folder)  # each file matches checksums.json again
        elif fault == "no digest tag":  # what a version registered before digests were recorded looks like
            mlflow.MlflowClient(fresh_settings.tracking_uri()).delete_model_version_tag(
                "tweetpulse-sentiment", version, MANIFEST_TAG
            )
        expected = {
            "ungated champion": "tweetpulse-sentiment/2 never passed the promotion gate (no gate tags)",
            "regenerated checksums": "the stored model was changed after it was registered",
            "no digest tag": f"tweetpulse-sentiment/2 has no {MANIFEST_TAG} tag",
        }[fault]
        with server.client(headers=server.admin()) as c:
            r = c.post("/model/reload", params={"task": "sentiment"})
            assert r.status_code == 422, r.text
            error = r.json()["error"]
            assert error["type"] == "model_invalid" and expected in error["message"], error
            assert c.get("/model").json()["version"] == "1"
        assert _outputs(server) == before


class BlackHole:
    """A TCP server on loopback that accepts every connection and never answers."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                self.held.append(self.sock.accept()[0])
            except TimeoutError:
                continue

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for conn in self.held:
            conn.close()
        self.sock.close()


def _reload(server, timeout: float = 60) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    with httpx.Client(base_url=server.url, timeout=timeout, headers=server.admin()) as c:
        r = c.post("/model/reload", params={"task": "sentiment"})
    return r, time.monotonic() - started


def test_an_mlflow_that_never_answers_blocks_neither_inference_nor_the_reload_lock(
    fresh_settings, monkeypatch
):
    for name in HTTP_ENV:  # the service sets these from its settings: undo that after the test
        monkeypatch.setenv(name, os.environ.get(name, "1"))
    hole = BlackHole()
    try:
        with serve(fresh_settings) as server:
            stop = threading.Event()
            answers: list[tuple[int, float]] = []

            def client() -> None:
                with httpx.Client(base_url=server.url, timeout=30, headers=server.admin()) as c:
                    while not stop.is_set():
                        started = time.monotonic()
                        status = c.post("/inference", json={"messages": FIXED}).status_code
                        answers.append((status, time.monotonic() - started))
                        time.sleep(0.02)

            inference = threading.Thread(target=client)
            inference.start()
            settings = server.state.settings
            settings.mlflow_tracking_uri = hole.url

            # 1. The reload deadline: each MLflow request may wait 6 s, the reload only 2 s.
            settings.reload_timeout_s, settings.mlflow_timeout_s, settings.mlflow_max_retries = 2, 6, 0
            first, first_s = _reload(server)
            second, second_s = _reload(server)  # the first load is still stuck: the lock is not
            for r, seconds in ((first, first_s), (second, second_s)):
                assert r.status_code == 422, r.text
                assert "no result within the reload deadline of 2 s" in r.json()["error"]["message"]
                assert 1.9 <= seconds < 6, seconds
            assert hole.held  # the service really was talking to the black hole

            # 2. The MLflow request timeout: a 1 s request timeout fails the load well before the deadline.
            settings.reload_timeout_s, settings.mlflow_timeout_s = 60, 1
            third, third_s = _reload(server)
            assert third.status_code == 422 and "timeout" in third.json()["error"]["message"], third.text
            assert third_s < 10, third_s

            # 3. The registry answers again: the next reload runs at once and nothing was swapped.
            settings.mlflow_tracking_uri, settings.reload_timeout_s = None, 300
            fourth, fourth_s = _reload(server)
            assert fourth.status_code == 200 and "already serving" in fourth.json()["results"][0]["message"]
            assert fourth_s < 10, fourth_s
            time.sleep(6)  # the abandoned loads of step 1 have ended by now
            with server.client(headers=server.admin()) as c:
                assert c.get("/model").json()["version"] == "1"
            stop.set()
            inference.join()
    finally:
        hole.close()
    assert answers and all(status == 200 for status, _ in answers), answers
    assert max(seconds for _, seconds in answers) < 5


def test_a_load_that_ends_after_its_deadline_is_never_swapped_in(tmp_path):
    settings = Settings(home=tmp_path, tasks="sentiment", reload_timeout_s=0.3)
    finished = threading.Event()
    late = object()

    def slow_loader(settings, task, *, unless_serving=None):
        time.sleep(1.0)
        finished.set()
        return late

    async def scenario():
        manager = ModelManager(settings, ThreadPoolExecutor(max_workers=1))
        result = await manager.reload("sentiment", loader=slow_loader)
        assert not result.reloaded and "reload deadline" in result.message
        assert manager.last_error["sentiment"].startswith("load failed")
        await asyncio.sleep(1.5)
        assert finished.is_set()  # the abandoned load did return its model...
        assert manager.get("sentiment") is None  # ...and it went nowhere

    asyncio.run(scenario())
