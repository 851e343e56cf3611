"""Watching what is served: the served-traffic recorder and its SQL (``served_predictions``)."""

from model_runner.monitoring.recorder import ServedRecorder

__all__ = ["ServedRecorder"]
