"""MLflow model registry access, the pyfunc wrapper and the champion gate."""

from model_runner.registry.gate import GateDecision, decide
from model_runner.registry.mlflow_registry import ModelNotFoundError, ModelRegistry, ModelVersionInfo

__all__ = ["GateDecision", "ModelNotFoundError", "ModelRegistry", "ModelVersionInfo", "decide"]
