"""Optional, off by default: answer the tweets that mention the account with their sentiment.

X's automation rules allow automated replies to users who mention the account, never to tweets found
by keyword search, so only the ``mentions:me`` target (sources/mentions.py) is ever answered; tweets
of watched queries, accounts or the replay file never are, whatever the settings.

Variable ``tweetpulse_reply`` = ``{"enabled": false, "dry_run": true}``. In dry run the reply each
mention would get is only logged. Posting needs user-context credentials (``consumer_key``,
``consumer_secret``, ``access_token``, ``access_token_secret`` in the ``x_api`` connection's extra:
app-only bearer tokens cannot post) and goes through the ModelRunner's ledger (``reply:<tweet id>``):
claim, post, confirm. A post the X API surely did not make (a 4xx, a 429 that outlasts the task's
time) releases the claim, so the retry answers it. A mention is answered at most once: one already
answered, or claimed by an attempt that may have posted (no answer within the timeout, a 5xx, or a
crash between posting and confirming), is not answered again. Never answered: the account's own
tweets, retweets, and mentions older than ``MAX_REPLY_AGE`` (a backlog drained after an outage, or
the past before replies were switched on).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import requests
import tweepy

from tweetpulse_dags.runner_api import ModelRunner
from tweetpulse_dags.runner_client import RunnerError
from tweetpulse_dags.sources.base import FetchedTweet, RateLimitExhausted

log = logging.getLogger(__name__)

Poster = Callable[[str, int], object]  # (text, in_reply_to_tweet_id)
MAX_REPLY_AGE = timedelta(hours=24)
# a claim that may have been posted stays pending this long (the ledger's maximum, a day): by the time
# it is claimable again its mention is older than MAX_REPLY_AGE, so no retry answers it twice
REPLY_LEASE_S = 86_400.0
# the X API refused this one reply for good (deleted tweet, replies restricted by its author, ...)
REFUSED = (tweepy.BadRequest, tweepy.Forbidden, tweepy.NotFound)


def reply_text(label: str, score: float) -> str:
    return f"Thanks for reaching out! Our sentiment model reads your tweet as {label} ({score:.0%})."


def reply_key(tweet_id: int) -> str:
    return f"reply:{tweet_id}"


def answerable(
    mentions: Sequence[FetchedTweet],
    sentiment: dict[int, tuple[str, float]],
    *,
    account_id: int,
    now: datetime,
) -> tuple[list[tuple[FetchedTweet, str, float]], Counter[str]]:
    """The mentions to answer, oldest first, with their sentiment; and why the others are not."""
    todo: list[tuple[FetchedTweet, str, float]] = []
    skipped: Counter[str] = Counter()
    for tweet in sorted(mentions, key=lambda t: t.id):
        if tweet.author_id == account_id:
            skipped["own_tweet"] += 1
        elif tweet.retweet:
            skipped["retweet"] += 1
        elif tweet.created_at is not None and now - tweet.created_at > MAX_REPLY_AGE:
            skipped["too_old"] += 1
        elif tweet.id not in sentiment:
            skipped["unclassified"] += 1
        else:
            todo.append((tweet, *sentiment[tweet.id]))
    return todo, skipped


def answer_mentions(
    mentions: Sequence[FetchedTweet],
    sentiment: dict[int, tuple[str, float]],
    *,
    account_id: int,
    settings: dict[str, Any],
    now: datetime,
    runner: ModelRunner | None = None,
    post: Poster | None = None,
) -> dict[str, int]:
    """Answers (or, in dry run, logs) each answerable mention once; returns the counts per outcome.

    Raises on what a retry can fix (rate limit beyond the task's time, X or the ModelRunner down,
    bad credentials) after releasing the claim of the reply it was posting; the caller then keeps
    the mentions cursor where it was, so the retry reads these mentions again and answers the rest.
    """
    outcome: Counter[str] = Counter()
    if not settings.get("enabled"):
        return dict(outcome)
    todo, skipped = answerable(mentions, sentiment, account_id=account_id, now=now)
    outcome.update({f"skipped_{why}": n for why, n in skipped.items()})
    if settings.get("dry_run", True):
        for tweet, label, score in todo:
            log.info("[dry run] would reply to mention %d: %s", tweet.id, reply_text(label, score))
        outcome["would_reply"] = len(todo)
        return dict(outcome)
    if runner is None or post is None:
        raise ValueError("posting replies needs the ModelRunner ledger and an X poster")
    for tweet, label, score in todo:
        key = reply_key(tweet.id)
        claim = runner.claim_alert(
            key, "reply", f"reply to mention {tweet.id} by @{tweet.author}", REPLY_LEASE_S
        )
        if not claim["granted"]:
            if claim.get("state") == "pending":  # at most once: that attempt may have posted it
                log.warning("reply to %d is claimed by another attempt; not answering it again", tweet.id)
                outcome["in_flight"] += 1
            else:
                outcome["already_answered"] += 1
            continue
        try:
            post(reply_text(label, score), tweet.id)
        except REFUSED as exc:
            _release(runner, key, claim["token"])
            log.error("X refused the reply to mention %d (%s); not retrying it", tweet.id, exc)
            outcome["refused"] += 1
            continue
        except Exception as exc:
            if not_posted(exc):
                _release(runner, key, claim["token"])  # the retry answers it
            else:  # it may have been posted: the claim stays pending, so no retry posts it twice
                log.error("reply to %d may or may not be posted (%s); it is not retried", tweet.id, exc)
            raise
        try:
            runner.confirm_alert(key, claim["token"])
        except RunnerError as exc:  # it is posted: failing now would only invite a second reply
            log.error("reply to %d posted but not confirmed in the ledger: %s", tweet.id, exc)
        log.info("replied to mention %d by @%s (%s)", tweet.id, tweet.author, label)
        outcome["posted"] += 1
    return dict(outcome)


def not_posted(exc: BaseException) -> bool:
    """True when the X API surely did not post: it answered 4xx (a 429 that outlasted the task's time
    included), or the connection was never made. A timeout waiting for the answer, a 5xx or a dropped
    connection leave it unknown."""
    if isinstance(exc, RateLimitExhausted | requests.ConnectTimeout):
        return True
    return isinstance(exc, tweepy.HTTPException) and 400 <= exc.response.status_code < 500


def _release(runner: ModelRunner, key: str, token: str) -> None:
    try:
        runner.release_alert(key, token)
    except RunnerError as exc:
        log.error("could not release %s (%s); the claim frees itself after its lease", key, exc)
