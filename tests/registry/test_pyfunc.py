"""The registered model works as a plain MLflow pyfunc: DataFrame[text] in, label + scores out."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.types import DataType
from packaging.utils import canonicalize_name

from model_runner.registry.pyfunc import pip_requirements
from tests.registry.conftest import EMOTION, SENTIMENT, TEXTS, use_store


@pytest.fixture(scope="module")
def sentiment_pyfunc(populated, mlflow_store):
    # models:/ URIs are resolved through MLflow's global registry URI, as any MLflow user would do it.
    with use_store(mlflow_store):
        return mlflow.pyfunc.load_model(populated.versions["sentiment_a"].uri)


def test_predict_returns_label_and_scores_in_input_order(sentiment_pyfunc, saved_models):
    out = sentiment_pyfunc.predict(pd.DataFrame({"text": TEXTS}))
    assert list(out.columns) == ["label"] + [f"score_{c}" for c in SENTIMENT]
    assert len(out) == len(TEXTS)
    expected = saved_models["sentiment_a"].model.predict_proba(TEXTS)
    np.testing.assert_allclose(out[[f"score_{c}" for c in SENTIMENT]].to_numpy(), expected, atol=1e-6)
    assert out["label"].tolist() == [SENTIMENT[i] for i in expected.argmax(axis=1)]
    # reversed input gives reversed rows: predictions are not tied to the model's length-sorted batching
    backwards = sentiment_pyfunc.predict(pd.DataFrame({"text": TEXTS[::-1]}))
    np.testing.assert_allclose(backwards.iloc[:, 1:].to_numpy(), expected[::-1], atol=1e-6)
    assert out[[f"score_{c}" for c in SENTIMENT]].dtypes.eq("float64").all()


def test_signature_and_stored_files(sentiment_pyfunc, populated, tmp_path):
    sig = sentiment_pyfunc.metadata.signature
    assert sig is not None
    assert sig.inputs.input_names() == ["text"]
    assert sig.inputs.input_types() == [DataType.string]
    assert sig.outputs.input_names() == ["label"] + [f"score_{c}" for c in SENTIMENT]
    assert sig.outputs.input_types() == [DataType.string] + [DataType.double] * 3
    # models from code: the entry script is stored, no pickled Python object
    folder = populated.registry.download("sentiment", version="1", dst=tmp_path / "dl")
    model_root = next(p for p in [folder, *folder.parents] if (p / "MLmodel").exists())
    assert (model_root / "pyfunc_entry.py").is_file()
    assert (model_root / "input_example.json").is_file()
    assert not list(model_root.rglob("*.pkl"))
    requirements = (model_root / "requirements.txt").read_text()
    assert requirements.split() == pip_requirements()
    # the code ships with the model (the project's own distribution is on no index)
    assert "tweetpulse-model-runner" not in requirements and "+cpu" not in requirements
    code = model_root / "code" / "model_runner"
    assert (code / "__init__.py").is_file() and (code / "registry" / "pyfunc.py").is_file()
    assert (code / "modeling" / "serving.py").is_file() and (code / "data" / "cleaning.py").is_file()
    assert not list(code.rglob("__pycache__")) and not list(code.rglob("*.pyc"))


def test_schema_is_enforced(sentiment_pyfunc):
    with pytest.raises(mlflow.exceptions.MlflowException):
        sentiment_pyfunc.predict(pd.DataFrame({"message": ["no text column"]}))


def test_emotion_model_has_its_own_columns(populated, mlflow_store):
    with use_store(mlflow_store):
        model = mlflow.pyfunc.load_model(populated.versions["emotion"].uri)
    out = model.predict(pd.DataFrame({"text": TEXTS[:2]}))
    assert list(out.columns) == ["label"] + [f"score_{c}" for c in EMOTION]
    assert set(out["label"]) <= set(EMOTION)
    np.testing.assert_allclose(out.iloc[:, 1:].sum(axis=1), 1.0, atol=1e-5)


def test_pip_requirements_are_pinned_without_local_labels():
    pins = pip_requirements()
    assert any(p.startswith("torch==") for p in pins)
    assert all("+" not in p for p in pins)


def test_pip_requirements_are_real_pypi_pins_from_the_lock():
    """Exact versions, the ones ``make install`` took from requirements/service.lock, and never the
    project's own distribution (its code ships with the model)."""
    lock = {}
    for line in (Path(__file__).parents[2] / "requirements" / "service.lock").read_text().splitlines():
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep:
            lock[canonicalize_name(name)] = version.split(";")[0].strip()
    pins = dict(p.split("==") for p in pip_requirements())
    assert {"mlflow", "torch", "transformers", "tokenizers", "safetensors", "emoji", "pandas"} <= set(pins)
    assert "tweetpulse-model-runner" not in pins
    for name, version in pins.items():
        assert lock.get(canonicalize_name(name)) == version, name


def test_empty_input_gives_empty_frame_with_all_columns(sentiment_pyfunc):
    out = sentiment_pyfunc.predict(pd.DataFrame({"text": pd.Series([], dtype=object)}))
    assert len(out) == 0
    assert list(out.columns) == ["label"] + [f"score_{c}" for c in SENTIMENT]
