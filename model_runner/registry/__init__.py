"""MLflow model registry access, the pyfunc wrapper, the champion gate and the load-time integrity checks."""

from model_runner.registry.gate import GateDecision, decide
from model_runner.registry.integrity import MANIFEST_TAG, UntrustedVersionError
from model_runner.registry.mlflow_registry import (
    ModelNotFoundError,
    ModelRegistry,
    ModelVersionInfo,
    apply_http_limits,
)

__all__ = [
    "MANIFEST_TAG",
    "GateDecision",
    "ModelNotFoundError",
    "ModelRegistry",
    "ModelVersionInfo",
    "UntrustedVersionError",
    "apply_http_limits",
    "decide",
]
