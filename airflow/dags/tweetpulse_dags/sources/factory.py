"""Which source a run reads: the X API when the ``x_api`` connection has a bearer token, else the replay."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from tweetpulse_dags import config
from tweetpulse_dags.sources.base import TweetSource
from tweetpulse_dags.sources.replay import ReplaySource
from tweetpulse_dags.sources.x_api import XApiSource, credentials_from_connection

log = logging.getLogger(__name__)

DEFAULT_REPLAY_FILE = Path(__file__).resolve().parents[1] / "data" / "replay_tweets.jsonl"


def choose_source(mode: str, anchor: datetime, settings: dict[str, Any]) -> TweetSource:
    """``mode``: "auto" (X when configured), "x" (X or fail) or "replay"."""
    if mode not in ("auto", "x", "replay"):
        raise ValueError(f"unknown tweet source {mode!r}; use auto, x or replay")
    creds = credentials_from_connection() if mode != "replay" else None
    if creds is not None:
        log.info("tweet source: X API v2%s", f" at {creds.base_url}" if creds.base_url else "")
        return XApiSource.from_credentials(creds)
    if mode == "x":
        raise ValueError(f"source 'x' needs the {config.X_CONN_ID} connection (bearer token as password)")
    path = config.get_variable(config.VAR_REPLAY_FILE, str(DEFAULT_REPLAY_FILE))
    log.info("tweet source: replay of %s (no X credentials configured)", path)
    return ReplaySource(path, anchor=anchor, shift_to_anchor=bool(settings["replay_shift_to_now"]))
