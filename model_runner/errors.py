"""Domain errors shared by the CLI and the HTTP service (which maps each to one status code)."""

from __future__ import annotations


class NoChampionError(LookupError):
    """The task has no registered champion yet: train one first."""
