"""Calling the X API within a task's time budget.

A 429 with ``x-rate-limit-reset`` waits until the reset when that fits in the time the task has left,
and fails at once otherwise (the next run, or an Airflow retry, picks up from the unchanged
``since_id``). A 429 without the header is retried once after a short pause, then fails: it must
never loop forever. 5xx and network errors get a few retries with exponential backoff.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import requests
import tweepy

from tweetpulse_dags.sources.base import Deadline, RateLimitExhausted

log = logging.getLogger(__name__)
T = TypeVar("T")
NO_RESET_PAUSE_S = 5.0  # the one pause before retrying a 429 that gave no reset time


def call_within_budget(
    fn: Callable[[], T],
    deadline: Deadline,
    *,
    sleep: Callable[[float], None] | None = None,
    now: Callable[[], float] | None = None,
    max_rate_limit_waits: int = 3,
    no_reset_pause_s: float | None = None,
    max_server_retries: int = 2,
) -> T:
    sleep, now = sleep or time.sleep, now or time.time  # looked up per call: tests replace them
    no_reset_pause_s = NO_RESET_PAUSE_S if no_reset_pause_s is None else no_reset_pause_s
    waits = no_reset = server = 0
    while True:
        try:
            return fn()
        except tweepy.TooManyRequests as exc:
            if exc.reset_time is None:
                no_reset += 1
                if no_reset > 1 or no_reset_pause_s > deadline.remaining():
                    why = "X API 429 without an x-rate-limit-reset header; gave up"
                    raise RateLimitExhausted(why) from exc
                log.warning("X API 429 without a reset time; one retry in %.0fs", no_reset_pause_s)
                sleep(no_reset_pause_s)
                continue
            wait = max(0.0, exc.reset_time - now()) + 1.0
            waits += 1
            if waits > max_rate_limit_waits:
                why = f"X API still rate limited after {max_rate_limit_waits} waits"
                raise RateLimitExhausted(why) from exc
            if wait > deadline.remaining():
                raise RateLimitExhausted(
                    f"X API rate limit resets in {wait:.0f}s; this task has {deadline.remaining():.0f}s left"
                ) from exc
            log.warning("X API rate limit: waiting %.0fs for the reset", wait)
            sleep(wait)
        except (tweepy.TwitterServerError, requests.ConnectionError, requests.Timeout) as exc:
            server += 1
            backoff = 2.0**server
            if server > max_server_retries or backoff > deadline.remaining():
                raise
            log.warning("X API call failed (%s); retry %d in %.0fs", type(exc).__name__, server, backoff)
            sleep(backoff)
