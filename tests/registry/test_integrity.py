"""Load-time integrity of registered versions: the gate must have passed and the files must be the
registered ones (manifest digest tag), against a real sqlite MLflow store."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import pytest
import torch
from safetensors.torch import load_file, save_file

from model_runner.jobs.champion import load_champion
from model_runner.modeling.classifier import write_checksums
from model_runner.registry import MANIFEST_TAG, UntrustedVersionError, decide
from model_runner.settings import Settings
from tests.registry.conftest import TEXTS, active_run, new_registry

PASSED = decide(0.6, None, tolerance=0.01, metric="macro_recall").as_tags()
REJECTED = decide(0.1, 0.6, tolerance=0.01, metric="macro_recall", champion_version="1").as_tags()


def _register(store, saved_models, gate: dict[str, str] | None = PASSED, key: str = "sentiment_a"):
    reg = new_registry(store)
    with active_run(store):
        info = reg.log_and_register(saved_models[key].path, task="sentiment", input_example=TEXTS[:2])
    if gate is not None:
        reg.set_tags("sentiment", info.version, gate)
    reg.promote("sentiment", info.version)
    return reg, reg.champion("sentiment")


def _stored_folder(reg, version: str) -> Path:
    """The store's own copy of a version (what every download copies), to alter it on purpose."""
    client = mlflow.MlflowClient(reg.tracking_uri)
    uri = client.get_model_version_download_uri(reg.model_name("sentiment"), version)
    return next(p.parent for p in Path(urlparse(uri).path).rglob("tweetpulse.json"))


def test_registration_records_the_manifest_digest_which_nobody_may_overwrite(mlflow_store, saved_models):
    reg, champion = _register(mlflow_store, saved_models)
    manifest = saved_models["sentiment_a"].path / "checksums.json"
    assert champion.tags[MANIFEST_TAG] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    with pytest.raises(ValueError, match="never changed"):
        reg.set_tags("sentiment", champion.version, {MANIFEST_TAG: "0" * 64})


def test_a_gated_untouched_version_downloads(mlflow_store, saved_models, tmp_path):
    reg, champion = _register(mlflow_store, saved_models)
    folder = reg.download_verified("sentiment", champion, dst=tmp_path / "d")
    assert (folder / "checksums.json").read_bytes() == (
        saved_models["sentiment_a"].path / "checksums.json"
    ).read_bytes()
    with pytest.raises(ValueError, match="not the registered model"):
        reg.download_verified("emotion", champion, dst=tmp_path / "e")


@pytest.mark.parametrize(
    ("gate", "expected"),
    [(None, "(no gate tags)"), (REJECTED, "(gate.decision=rejected)")],
    ids=["never gated", "gate rejected"],
)
def test_a_champion_that_did_not_pass_the_gate_is_refused_before_download(
    mlflow_store, saved_models, tmp_path, gate, expected
):
    reg, champion = _register(mlflow_store, saved_models, gate=gate)
    with pytest.raises(UntrustedVersionError, match="never passed the promotion gate") as err:
        reg.download_verified("sentiment", champion, dst=tmp_path / "d")
    assert expected in str(err.value)
    assert not (tmp_path / "d").exists()  # refused on the tags alone


def test_a_version_without_a_digest_tag_is_refused(mlflow_store, saved_models, tmp_path):
    reg, champion = _register(mlflow_store, saved_models)
    mlflow.MlflowClient(reg.tracking_uri).delete_model_version_tag(
        champion.name, champion.version, MANIFEST_TAG
    )
    with pytest.raises(UntrustedVersionError, match=f"no {MANIFEST_TAG} tag"):
        reg.download_verified("sentiment", reg.champion("sentiment"), dst=tmp_path / "d")


def test_weights_edited_with_a_regenerated_manifest_are_refused(mlflow_store, saved_models, tmp_path):
    reg, champion = _register(mlflow_store, saved_models)
    folder = _stored_folder(reg, champion.version)
    head = load_file(folder / "head.safetensors")
    save_file({k: torch.flip(v, dims=[0]) for k, v in head.items()}, folder / "head.safetensors")
    write_checksums(folder)  # every file matches the manifest again: only the digest tag tells
    with pytest.raises(UntrustedVersionError, match="changed after it was registered"):
        reg.download_verified("sentiment", champion, dst=tmp_path / "d")


def test_a_file_planted_beside_the_listed_ones_is_refused(mlflow_store, saved_models, tmp_path):
    reg, champion = _register(mlflow_store, saved_models)
    folder = _stored_folder(reg, champion.version)
    assert "added_tokens.json" not in json.loads((folder / "checksums.json").read_text())
    (folder / "added_tokens.json").write_text(json.dumps({"[EVIL]": 5}))  # the manifest still matches
    with pytest.raises(UntrustedVersionError, match=r"does not list: added_tokens\.json"):
        reg.download_verified("sentiment", champion, dst=tmp_path / "d")


def test_the_cli_load_path_applies_the_same_checks(mlflow_store, saved_models, tmp_path):
    reg, champion = _register(mlflow_store, saved_models, gate=None)
    settings = Settings(
        home=tmp_path / "home", mlflow_tracking_uri=reg.tracking_uri, registry_prefix=reg.name_prefix
    )
    with pytest.raises(UntrustedVersionError, match="never passed the promotion gate"):
        load_champion(settings, "sentiment", dst=tmp_path / "cli")
    reg.set_tags("sentiment", champion.version, PASSED)
    loaded = load_champion(settings, "sentiment", dst=tmp_path / "cli2")
    assert (
        loaded.version.version == champion.version
        and loaded.model.labels == saved_models["sentiment_a"].model.labels
    )
