"""Optional, off by default: answer each inspected tweet with its sentiment.

Variable ``tweetpulse_reply`` = ``{"enabled": false, "dry_run": true}``. In dry run the reply is only
logged. Posting needs user-context credentials (``consumer_key``, ``consumer_secret``,
``access_token``, ``access_token_secret`` in the ``x_api`` connection's extra: app-only bearer tokens
cannot post) and goes through the alert ledger, so a tweet is answered once even across retries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from tweetpulse_dags import config
from tweetpulse_dags.runner_api import ModelRunner
from tweetpulse_dags.sources.base import Deadline, FetchedTweet

log = logging.getLogger(__name__)

Poster = Callable[[str, int], None]  # (text, in_reply_to_tweet_id)


def reply_text(label: str, score: float) -> str:
    return f"Thanks for reaching out! Our sentiment model reads your tweet as {label} ({score:.0%})."


def x_poster(deadline: Deadline) -> Poster:
    import tweepy
    from airflow.sdk import BaseHook

    from tweetpulse_dags.sources.rate_limit import call_within_budget
    from tweetpulse_dags.sources.x_api import API_ORIGINS, ApiBaseAdapter

    conn = BaseHook.get_connection(config.X_CONN_ID)
    extra = conn.extra_dejson or {}
    needed = ("consumer_key", "consumer_secret", "access_token", "access_token_secret")
    missing = [k for k in needed if not extra.get(k)]
    if missing:
        raise ValueError(f"replying needs {', '.join(missing)} in the {config.X_CONN_ID} connection's extra")
    client = tweepy.Client(**{k: extra[k] for k in needed})
    base_url = conn.host if conn.host and "://" in conn.host else None
    for origin in API_ORIGINS:
        client.session.mount(origin, ApiBaseAdapter(base_url))

    def post(text: str, tweet_id: int) -> None:
        call_within_budget(lambda: client.create_tweet(text=text, in_reply_to_tweet_id=tweet_id), deadline)

    return post


def reply_all(
    tweets: Sequence[FetchedTweet],
    sentiment: dict[int, tuple[str, float]],
    *,
    settings: dict[str, Any],
    runner: ModelRunner | None = None,
    poster_factory: Callable[[], Poster] | None = None,
) -> int:
    """Returns how many replies were posted (0 in dry run)."""
    if not settings.get("enabled"):
        return 0
    todo = [(t, sentiment[t.id]) for t in tweets if t.id in sentiment]
    if settings.get("dry_run", True):
        for tweet, (label, score) in todo:
            log.info("[dry run] would reply to tweet %d: %s", tweet.id, reply_text(label, score))
        return 0
    if runner is None or poster_factory is None:
        raise ValueError("posting replies needs the ModelRunner ledger and an X poster")
    post = poster_factory()
    posted = 0
    for tweet, (label, score) in todo:
        claim = runner.claim_alert(f"reply:{tweet.id}", "reply", f"reply to {tweet.id}", 300)
        if not claim["granted"]:
            continue
        try:
            post(reply_text(label, score), tweet.id)
        except Exception:
            runner.release_alert(f"reply:{tweet.id}", claim["token"])
            raise
        runner.confirm_alert(f"reply:{tweet.id}", claim["token"])
        posted += 1
    return posted
