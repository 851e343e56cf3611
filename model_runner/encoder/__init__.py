"""The frozen pretrained encoder and how a model id becomes local weights."""

from model_runner.encoder.encoder import FrozenEncoder, mean_pool, pick_device
from model_runner.encoder.resolve import EncoderNotFoundError, ResolvedModel, resolve_model

__all__ = [
    "EncoderNotFoundError",
    "FrozenEncoder",
    "ResolvedModel",
    "mean_pool",
    "pick_device",
    "resolve_model",
]
