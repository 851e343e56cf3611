"""Hot reload: atomic under load, serialised, and a broken model never replaces a good one."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import mlflow
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from model_runner.modeling.classifier import write_checksums
from model_runner.registry import MANIFEST_TAG
from model_runner.registry.integrity import manifest_digest
from tests.service.conftest import make_dataset, serve, train_champion
from tests.training.conftest import make_rows

FIXED = [r["text"] for r in make_rows(4, seed=11)]


def _stored_folder(settings, version: str) -> Path:
    """The registry's own copy of a version (what a reload downloads), to damage it on purpose."""
    client = mlflow.MlflowClient(settings.tracking_uri())
    root = Path(urlparse(client.get_model_version_download_uri("tweetpulse-sentiment", version)).path)
    return next(p.parent for p in root.rglob("tweetpulse.json"))


def test_clients_see_no_error_and_no_going_back_while_a_reload_happens(fresh_settings, tmp_path):
    with serve(fresh_settings) as server:
        stop = threading.Event()
        seen: list[list[tuple[int, str]]] = [[] for _ in range(8)]

        def client(i: int) -> None:
            with server.client() as c:  # the read token
                while not stop.is_set():
                    r = c.post("/inference", json={"messages": FIXED * 4})
                    seen[i].append(
                        (r.status_code, r.json()["model"]["version"] if r.status_code == 200 else "")
                    )

        threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        outcome = train_champion(fresh_settings, data=str(make_dataset(tmp_path / "v2", seed=5)))
        assert outcome.promoted and outcome.model_version == "2"
        with server.client() as c:
            r = c.post("/model/reload", headers=server.admin(), params={"task": "sentiment"})
        assert r.status_code == 200 and r.json()["results"][0]["reloaded"] is True
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join()

    for calls in seen:
        assert calls and all(status == 200 for status, _ in calls)
        versions = [int(v) for _, v in calls]
        assert versions == sorted(versions)
    assert {v for calls in seen for _, v in calls} == {"1", "2"}


def _outputs(server) -> list[dict]:
    with server.client() as c:
        return c.post("/inference", json={"messages": FIXED}).json()["predictions"]


@pytest.mark.parametrize("damage", ["altered file", "nan weights"])
def test_a_broken_model_is_refused_and_the_old_one_keeps_serving(fresh_settings, tmp_path, damage):
    with serve(fresh_settings) as server:
        before = _outputs(server)
        train_champion(fresh_settings, data=str(make_dataset(tmp_path / "v2", seed=5)))
        folder = _stored_folder(fresh_settings, "2")
        head = load_file(folder / "head.safetensors")
        if damage == "altered file":
            head = {k: v + 1 for k, v in head.items()}
            save_file(head, folder / "head.safetensors")  # checksums.json no longer matches
        else:
            save_file(
                {k: torch.full_like(v, float("nan")) for k, v in head.items()}, folder / "head.safetensors"
            )
            write_checksums(folder)  # files are consistent, the answers are not
            # and the registered digest matches too (as if registered so): only the canaries can tell
            mlflow.MlflowClient(fresh_settings.tracking_uri()).set_model_version_tag(
                "tweetpulse-sentiment", "2", MANIFEST_TAG, manifest_digest(folder)
            )
        with server.client() as c:
            r = c.post("/model/reload", headers=server.admin(), params={"task": "sentiment"})
            assert r.status_code == 422, r.text
            assert r.json()["error"]["type"] == "model_invalid"
            expected = "sha256" if damage == "altered file" else "probability"
            assert expected in r.json()["error"]["message"]
            assert c.get("/model").json()["version"] == "1"
        after = _outputs(server)
    assert [p["label"] for p in after] == [p["label"] for p in before]
    assert np.allclose(
        [list(p["scores"].values()) for p in after], [list(p["scores"].values()) for p in before], atol=1e-6
    )


def test_concurrent_reloads_are_serialised(fresh_settings, tmp_path):
    import asyncio

    with serve(fresh_settings) as server:
        train_champion(fresh_settings, data=str(make_dataset(tmp_path / "v2", seed=5)))

        async def both():
            async with httpx.AsyncClient(base_url=server.url, timeout=60, headers=server.admin()) as c:
                return await asyncio.gather(*[c.post("/model/reload?task=sentiment") for _ in range(2)])

        responses = asyncio.run(both())
    results = sorted((r.json()["results"][0] for r in responses), key=lambda x: not x["reloaded"])
    assert [r["reloaded"] for r in results] == [True, False]  # the second found version 2 already served
    assert results[1]["version"] == "2" and "already serving" in results[1]["message"]
