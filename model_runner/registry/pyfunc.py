"""The MLflow pyfunc face of a saved ``TweetClassifier`` folder.

The model is logged as "models from code": MLflow stores the small script ``pyfunc_entry.py`` (which
builds a :class:`TweetPulsePyfunc`) instead of a cloudpickled object, so loading a registered model
never unpickles anything (DESIGN §6). The classifier folder itself travels as the artifact ``model``
and is loaded with ``load_for_serving`` (safetensors only), the way the service loads it: int8 when
training chose it. The runtime is torch unless the loader asks for another through MLflow's
``model_config``: ``{"runtime": "auto"}`` (or any ``serving_runtime`` value) measures the candidates at
load like the service, and ``runtime_probe_texts`` / ``quant_min_agreement`` / ``quant_max_drop`` set
its gate. torch stays the default because a pyfunc's answers must not depend on the machine that
loads it, and ONNX Runtime is not among the pinned requirements (auto then just skips it).

The code travels with the model: the ``model_runner`` package is logged as the model's ``code_paths``
(MLflow puts it on ``sys.path`` before running the entry script), and the requirements pin only real
PyPI distributions (the ones the package imports on the way to ``load_for_serving``, at the versions
of this environment, which ``make install`` takes from ``requirements/service.lock``). So a fresh
environment with nothing but the model's ``requirements.txt`` installed loads it with
``mlflow.pyfunc.load_model`` and serves it with ``mlflow models serve``; this project's own
distribution, which is on no index, is never required. Where ``model_runner`` is already imported
(the service, the tests), that copy keeps serving: MLflow only prepends the code folder to the path.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types import ColSpec, DataType, Schema
from packaging.version import Version

import model_runner
from model_runner.modeling.classifier import CONFIG_FILE
from model_runner.modeling.serving import TORCH, load_for_serving

MODEL_ARTIFACT = "model"
TEXT_COLUMN = "text"
LABEL_COLUMN = "label"
SCORE_PREFIX = "score_"
ENTRY_SCRIPT = Path(__file__).with_name("pyfunc_entry.py")

PACKAGE_DIR = Path(model_runner.__file__).parent

# Explicit requirements: letting MLflow infer them loads the model in a subprocess (slow). What
# importing model_runner.registry.pyfunc (and so the data and encoder packages) and loading a model
# needs; all on PyPI. Not the project's own distribution: its code ships with the model.
_PINNED = (
    "mlflow",
    "torch",
    "transformers",
    "tokenizers",
    "safetensors",
    "huggingface_hub",
    "numpy",
    "pandas",
    "emoji",
    "datasets",
    "pydantic",
    "pydantic-settings",
    "tqdm",
)
# Never copied into the model: byte code is interpreter-specific, the rest is not code.
_NOT_SHIPPED = ("__pycache__", "*.pyc", "*.pyo", "*.egg-info")


class TweetPulsePyfunc(PythonModel):
    """``predict(DataFrame[text]) -> DataFrame[label, score_<class>...]`` in input order."""

    def __init__(self) -> None:
        self._model = None
        self.choice = None  # the RuntimeChoice made at load_context

    def load_context(self, context: PythonModelContext) -> None:
        config = getattr(context, "model_config", None) or {}
        gate = {
            key: type_(config[name])
            for key, name, type_ in (
                ("probe_texts", "runtime_probe_texts", int),
                ("min_agreement", "quant_min_agreement", float),
                ("max_drop", "quant_max_drop", float),
            )
            if name in config
        }
        self._model, self.choice = load_for_serving(
            Path(context.artifacts[MODEL_ARTIFACT]), runtime=config.get("runtime", TORCH), **gate
        )

    def predict(
        self, context: PythonModelContext, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        if self._model is None:
            raise RuntimeError("load_context was not called")
        texts = _texts(model_input)
        labels = self._model.labels
        proba = self._model.predict_proba(texts).astype("float64")
        # An empty input falls through naturally: a (0, n_classes) array gives an empty frame.
        frame = pd.DataFrame(
            {LABEL_COLUMN: pd.Series([labels[i] for i in proba.argmax(axis=1)], dtype=object)}
        )
        for j, name in enumerate(labels):
            frame[f"{SCORE_PREFIX}{name}"] = proba[:, j]
        return frame


def _texts(model_input: Any) -> list[str]:
    # Schema enforcement hands us a DataFrame; direct callers of the class may pass a list or Series.
    if isinstance(model_input, pd.DataFrame):
        column = model_input[TEXT_COLUMN] if TEXT_COLUMN in model_input else model_input.iloc[:, 0]
        return [str(t) for t in column.tolist()]
    if isinstance(model_input, pd.Series):
        return [str(t) for t in model_input.tolist()]
    return [str(t) for t in model_input]


def model_labels(model_dir: Path) -> list[str]:
    return list(json.loads((Path(model_dir) / CONFIG_FILE).read_text())["labels"])


def signature_for(labels: Sequence[str]) -> ModelSignature:
    outputs = [ColSpec(DataType.string, LABEL_COLUMN)]
    outputs += [ColSpec(DataType.double, f"{SCORE_PREFIX}{name}") for name in labels]
    return ModelSignature(inputs=Schema([ColSpec(DataType.string, TEXT_COLUMN)]), outputs=Schema(outputs))


def pip_requirements() -> list[str]:
    pins = []
    for dist in _PINNED:
        try:
            # Drop local labels such as torch's "+cpu": pip could not match them on a CUDA machine.
            pins.append(f"{dist}=={Version(metadata.version(dist)).public}")
        except metadata.PackageNotFoundError:
            pins.append(dist)
    return pins


def log_pyfunc(
    model_dir: Path, *, name: str, input_example: Sequence[str], registered_model_name: str | None = None
) -> ModelInfo:
    """Log ``model_dir`` as a pyfunc LoggedModel of the active run (fluent API: global tracking URI),
    with the ``model_runner`` package as its code. Metrics the run logged before, at step 0 (the
    held-out evaluation), are linked to the new LoggedModel by MLflow itself."""
    model_dir = Path(model_dir)
    if not (model_dir / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{model_dir} is not a saved TweetClassifier (no {CONFIG_FILE})")
    with tempfile.TemporaryDirectory(prefix="tp-pyfunc-code-") as tmp:
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=ENTRY_SCRIPT,
            artifacts={MODEL_ARTIFACT: str(model_dir)},
            code_paths=[str(stage_code(Path(tmp)))],
            signature=signature_for(model_labels(model_dir)),
            input_example=pd.DataFrame({TEXT_COLUMN: list(input_example)}),
            pip_requirements=pip_requirements(),
            registered_model_name=registered_model_name,
        )


def stage_code(into: Path) -> Path:
    """A clean copy of the ``model_runner`` package under ``into`` (no byte code), for ``code_paths``."""
    target = Path(into) / PACKAGE_DIR.name
    shutil.copytree(PACKAGE_DIR, target, ignore=shutil.ignore_patterns(*_NOT_SHIPPED))
    return target
