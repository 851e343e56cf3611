"""Domain errors shared by the CLI and the HTTP service.

Each error class carries the HTTP status and error type the service answers with (as BentoML's
exceptions do), so routes raise domain errors and never translate them: one handler in
``service/errors.py`` turns any ``TweetpulseError`` into the JSON error body. Their messages are
written for the caller and never hold secrets, file contents or label values.
"""

from __future__ import annotations

from typing import Any, ClassVar


class TweetpulseError(Exception):
    """An error whose message is safe to show to the caller, with the status it means."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "internal_error"
    # seconds a client should wait before repeating the request (the Retry-After header); None: none
    retry_after_s: float | None = None

    def details(self) -> dict[str, Any]:
        """More machine-readable fields of the error body, next to ``type`` and ``message``."""
        return {}


class NoChampionError(TweetpulseError, LookupError):
    """The task has no registered champion yet: train one first."""

    status, type = 503, "model_not_loaded"
    retry_after_s = 30
