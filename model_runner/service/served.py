"""A model as the service serves it: loaded from the registry (or a Hub commit), checked, described.

Loading happens off the event loop; a model reaches ``/inference`` only after the registry checks and
``validate`` passed, so an ungated champion, a broken download, an altered file (even with a regenerated
manifest) or a model that answers nonsense never replaces a good one.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from model_runner.errors import NoChampionError
from model_runner.jobs.champion import registry_for
from model_runner.modeling.classifier import TweetClassifier, verify_files
from model_runner.modeling.serving import CANARY_TEXTS, RuntimeChoice, load_for_serving, runtime_of
from model_runner.registry import ModelVersionInfo, UntrustedVersionError
from model_runner.settings import Settings


class AlreadyServing(LookupError):
    """The champion is the version already served: nothing to download."""


class ModelValidationError(ValueError):
    """The new model failed validation; the old one keeps serving."""


@dataclass
class ServedModel:
    task: str
    name: str
    version: str
    model: TweetClassifier
    quantized: bool
    metrics: dict
    run_id: str | None
    source: str
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # served from the Hub: {"repo_id", "revision" (as configured), "commit" (the sha)}; None: registry
    hub: dict | None = None
    # how it is served (runtime, precision, every candidate measured); None: built without the loader
    choice: RuntimeChoice | None = None

    @property
    def precision(self) -> str:
        """``fp32``, ``int8``, ``bf16`` or ``fp16``: the arithmetic of the served runtime."""
        if self.choice is not None:
            return self.choice.precision
        return "int8" if self.quantized else "fp32"

    @property
    def runtime_name(self) -> str:
        """The serving runtime, as ``serving_runtime`` names them (``onnxruntime-int8``, ...)."""
        if self.choice is not None:
            return self.choice.name
        engine = runtime_of(self.model)
        return f"{engine}-int8" if self.quantized else engine

    @property
    def trained_at(self) -> datetime | None:
        """When the model was trained (its ``tweetpulse.json``); None for models older than the field."""
        try:
            return datetime.fromisoformat(self.model.meta["trained_at"])
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def labels(self) -> list[str]:
        return self.model.labels

    @property
    def tag(self) -> str:
        return f"{self.name}/{self.version}"

    def describe(self) -> dict:
        return {
            "task": self.task,
            "name": self.name,
            "version": self.version,
            "labels": self.labels,
            "quantized": self.quantized,
            "serving": self.precision,
            "runtime": runtime_of(self.model),
            "serving_runtime": self.runtime_name,
            "precision": self.precision,
            "runtime_selection": self.choice.to_dict() if self.choice is not None else None,
            "metrics": self.metrics,
            "adapter": self.model.meta.get("adapter"),
            "base_model": self.model.meta.get("base_model"),
            "teacher": self.model.meta.get("teacher"),
            "mlflow_run_id": self.run_id,
            "source": self.source,
            "hub": self.hub,
            "max_length": self.model.max_length,
            "loaded_at": self.loaded_at.isoformat(),
        }


def validate(model: TweetClassifier) -> np.ndarray:
    """Checks the label set and the canary predictions; returns those predictions."""
    labels = model.labels
    if not labels or len(set(labels)) != len(labels):
        raise ModelValidationError(f"label set {labels!r} is empty or has duplicates")
    proba = model.predict_proba(list(CANARY_TEXTS))
    if proba.shape != (len(CANARY_TEXTS), len(labels)):
        raise ModelValidationError(
            f"canary predictions have shape {proba.shape}, expected {(len(CANARY_TEXTS), len(labels))}"
        )
    if not np.isfinite(proba).all() or not np.allclose(proba.sum(axis=1), 1.0, atol=1e-3):
        raise ModelValidationError("canary predictions are not finite probability distributions")
    return proba


def load_version(
    settings: Settings,
    task: str,
    version: ModelVersionInfo | None = None,
    *,
    unless_serving: str | None = None,
) -> ServedModel:
    """Download (the champion unless ``version`` is given), verify, load as served, validate.

    Verify: the version passed the promotion gate, and its ``checksums.json`` hashes to the
    ``manifest_sha256`` tag recorded at registration (then every file to its manifest entry); any
    failure is a ``ModelValidationError`` naming the reason, so the served model stays.

    ``unless_serving``: the version already served; asking the registry is cheap, downloading and
    loading is not, so a reload (or a registry poll) of an unchanged champion stops here.
    """
    registry = registry_for(settings)
    info = version or registry.champion(task)
    if info is None:
        raise NoChampionError(f"no champion for task {task!r} in {registry.model_name(task)}")
    if unless_serving is not None and str(info.version) == str(unless_serving):
        raise AlreadyServing(info.version)
    tmp = Path(tempfile.mkdtemp(prefix=f"tp-serve-{task}-"))
    try:
        try:
            # refuses an ungated or untagged version before downloading, altered files after
            folder = registry.download_verified(task, info, dst=tmp)
        except UntrustedVersionError as exc:
            raise ModelValidationError(str(exc)) from exc
        return load_folder(
            folder,
            task=task,
            name=info.name,
            version=info.version,
            run_id=info.run_id,
            runtime=settings.serving_runtime,
            probe_texts=settings.runtime_probe_texts,
            min_agreement=settings.quant_min_agreement,
            max_drop=settings.quant_max_drop,
        )
    finally:
        # weights are in memory now; the download is not needed
        shutil.rmtree(tmp, ignore_errors=True)


def load_folder(
    folder: Path,
    *,
    task: str,
    name: str,
    version: str,
    run_id: str | None = None,
    runtime: str = "torch",
    source: str | None = None,
    hub: dict | None = None,
    probe_texts: int = 256,
    min_agreement: float = 0.97,
    max_drop: float = 0.01,
) -> ServedModel:
    """Verify, load as served (``load_for_serving`` picks the runtime: measured for ``auto``), validate.

    The task and the canaries are checked on the loaded torch model, before any other runtime is
    built. ``probe_texts``, ``min_agreement``, ``max_drop``: the settings ``runtime_probe_texts`` and
    ``quant_*`` (the accuracy gate every measured runtime must pass).
    """
    tag = f"{name}/{version}"

    def accept(model: TweetClassifier) -> np.ndarray:
        trained_for = model.meta.get("task", task)
        if trained_for != task:
            raise ModelValidationError(f"{tag} was trained for task {trained_for!r}, not {task!r}")
        return validate(model)

    try:
        verify_files(folder)
        model, choice = load_for_serving(
            folder,
            runtime=runtime,
            check=accept,
            tag=tag,
            probe_texts=probe_texts,
            min_agreement=min_agreement,
            max_drop=max_drop,
        )
    except ModelValidationError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelValidationError(f"{tag}: {exc}") from exc
    return ServedModel(
        task=task,
        name=name,
        version=str(version),
        model=model,
        quantized=choice.quantized,
        metrics=model.meta.get("metrics", {}),
        run_id=run_id,
        source=source or f"models:/{name}/{version}",
        hub=hub,
        choice=choice,
    )
