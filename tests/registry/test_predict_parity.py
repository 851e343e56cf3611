"""`model-runner predict` answers exactly as `/inference` does: both load the registered champion through
``load_for_serving`` (same runtime, same int8 choice), so the same texts get the same labels and scores."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from model_runner import cli
from model_runner.modeling.classifier import CONFIG_FILE, write_checksums
from model_runner.registry import decide
from model_runner.service.served import load_version
from model_runner.service.text_input import char_budget, prepare_message
from model_runner.settings import Settings
from tests.registry.conftest import SENTIMENT, active_run, new_registry

PASSED = decide(0.6, None, tolerance=0.01, metric="macro_recall").as_tags()
TEXTS = [
    "I love this phone so much!!! 😍",
    "meh",
    "Worst customer service I have ever had, never again @brand",
    "ok",
    "the update is out today, installing now http://t.co/x",
    "not sure how I feel about the new update #tech",
    "@user thanks for the help 🙏🙏",
    "",
    "great great great " * 30,
    "The meeting is at 3pm on Tuesday.",
]


@pytest.fixture(params=["fp32", "int8"])
def recorded(request) -> str:
    """The serving choice training recorded in tweetpulse.json."""
    return request.param


@pytest.fixture
def settings(recorded, mlflow_store, saved_models, tmp_path) -> Settings:
    """A registry whose gated champion is the tiny sentiment model, recorded as fp32 or int8."""
    folder = shutil.copytree(saved_models["sentiment_a"].path, tmp_path / "model")
    config = json.loads((folder / CONFIG_FILE).read_text())
    (folder / CONFIG_FILE).write_text(json.dumps({**config, "serving": recorded}))
    write_checksums(folder)
    reg = new_registry(mlflow_store)
    with active_run(mlflow_store):
        info = reg.log_and_register(folder, task="sentiment", input_example=TEXTS[:2])
    reg.set_tags("sentiment", info.version, PASSED)
    reg.promote("sentiment", info.version)
    return Settings(
        home=tmp_path / "home",
        mlflow_tracking_uri=reg.tracking_uri,
        registry_prefix=reg.name_prefix,
        serving_runtime="onnxruntime",
    )


def test_cli_predict_answers_as_the_service(recorded, settings, tmp_path, monkeypatch, capsys):
    # the CLI, as `model-runner predict` runs it
    monkeypatch.setattr(cli, "get_settings", lambda: settings)
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS), encoding="utf-8")
    assert cli.main(["predict", "--input", str(inp), "--output", str(out)]) == 0
    err = capsys.readouterr().err
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    cli_proba = np.array([[row["scores"][name] for name in SENTIMENT] for row in rows])

    # the service, as a reload loads the champion and /inference prepares and classifies messages
    served = load_version(settings, "sentiment")
    budget = char_budget(served.model.max_length, settings.max_message_chars)
    prepared = [prepare_message(t, budget=budget)[0] for t in TEXTS]
    service_proba, _ = served.model.predict_with_truncation(
        prepared, batch_size=settings.batch_pass_size, clean=False
    )

    runtime = "torch" if recorded == "int8" else "onnxruntime"  # int8 is torch's dynamic quantization
    assert (served.describe()["serving"], served.describe()["runtime"]) == (recorded, runtime)
    assert f"({recorded}, {runtime}) to {out}" in err  # the CLI says how it served
    assert served.labels == SENTIMENT
    assert [row["label"] for row in rows] == [SENTIMENT[i] for i in service_proba.argmax(axis=1)]
    np.testing.assert_allclose(cli_proba, service_proba, rtol=0, atol=1e-6)
