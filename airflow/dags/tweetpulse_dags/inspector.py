"""One inspector pass over one watched account/query: fetch, store, classify, store, advance the cursor.

Every write goes to the ModelRunner, which commits it before answering; the cursor moves only after
the last write succeeded, so a failure anywhere (or a retry) refetches the same tweets, and the
idempotent upserts store each tweet and prediction once.

A run fetches at most ``max_tweets_per_target``. When more are waiting, nothing is dropped: the X API
pages newest first, so the run stores the newest ones and records the older rest as a backfill
window ``(since_id, until_id)`` (cursors.py); the next runs drain that window first, then read what
came in meanwhile. ``since_id`` only ever moves over ranges that were fetched in full.

Replies (replies.py, off by default) go only to the account's mentions: with replies enabled the watch
list gains the target ``mentions:me``, read with the account's user-context keys (sources/mentions.py),
stored and classified like every target, then answered before its cursor moves. Tweets of watched
queries, accounts and the replay file are never answered.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from tweetpulse_dags import config, replies
from tweetpulse_dags.cursors import Backfill, CursorStore
from tweetpulse_dags.runner_api import ModelRunner
from tweetpulse_dags.sources.base import Deadline, FetchedTweet, Target, TweetSource, parse_targets
from tweetpulse_dags.sources.mentions import MENTIONS, MentionsSource, mentions_source

log = logging.getLogger(__name__)
T = TypeVar("T")
_WRITE_CHUNK = 500


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def reply_settings() -> dict[str, Any]:
    return config.merge_settings(config.DEFAULT_REPLY, config.get_json_variable(config.VAR_REPLY, {}), None)


def load_targets() -> list[dict[str, str]]:
    """The watch list as plain dicts (they travel through XCom to the mapped tasks), and the
    account's mentions when replies are enabled (dry run included): the only tweets ever answered."""
    raw = config.get_json_variable(config.VAR_WATCH, config.DEFAULT_WATCH)
    targets = parse_targets(raw)
    if reply_settings().get("enabled"):
        targets.append(MENTIONS)
    return [{"kind": t.kind, "value": t.value} for t in targets]


def served_tasks(runner: ModelRunner) -> list[str]:
    tasks = runner.served_tasks()
    if "sentiment" not in tasks:
        # a fresh deployment before its first retrain: nothing to classify with, not an error
        from airflow.sdk.exceptions import AirflowSkipException

        served = ", ".join(tasks) or "none"
        raise AirflowSkipException(f"the ModelRunner serves no sentiment model yet (served: {served})")
    log.info("classifying with every served task: %s", ", ".join(tasks))
    return tasks


def classify_and_store(
    runner: ModelRunner, tweets: Sequence[FetchedTweet], tasks: Sequence[str], batch: int
) -> tuple[dict[str, dict[str, int]], dict[int, tuple[str, float]]]:
    """Counts per task, and each tweet's sentiment (label, top score) for the optional replies."""
    counts: dict[str, dict[str, int]] = {}
    sentiment: dict[int, tuple[str, float]] = {}
    for task in tasks:
        stored = {"inserted": 0, "queued_for_review": 0}
        for part in chunks(tweets, batch):
            result = runner.classify([t.text for t in part], task)
            preds = [
                {"tweet_id": str(t.id), "label": p["label"], "scores": p["scores"]}
                for t, p in zip(part, result.predictions, strict=True)
            ]
            answer = runner.store_predictions(task, result.model_version, preds)
            for key in stored:
                stored[key] += int(answer.get(key, 0))
            if task == "sentiment":
                sentiment.update({int(p["tweet_id"]): (p["label"], max(p["scores"].values())) for p in preds})
        counts[task] = stored
    return counts, sentiment


@dataclass
class Progress:
    """What one bounded run fetched and where the cursor stands once it is stored."""

    tweets: list[FetchedTweet] = field(default_factory=list)
    since_id: int | None = None  # every tweet at or below it is fetched
    until_id: int | None = None  # with head_id: the window (since_id, until_id) is left to later runs
    head_id: int | None = None
    pending: bool = False  # the bound cut this run short: tweets are known to be left
    requests: int = 0


def fetch_bounded(
    source: TweetSource,
    target: Target,
    since_id: int | None,
    window: tuple[int, int] | None,
    limit: int,
    deadline: Deadline,
) -> Progress:
    """At most ``limit`` tweets: first the open backfill window (oldest backlog first, so it drains
    before the X API's 7-day recent search forgets it), then with what is left of the budget the
    tweets newer than everything stored. ``since_id`` moves only over ranges fetched in full."""
    progress = Progress(since_id=since_id)
    budget = limit
    if window is not None:
        until_id, head_id = window
        got = source.fetch(target, since_id, budget, deadline, until_id=until_id)
        progress.requests += got.requests
        progress.tweets += got.tweets
        budget -= len(got.tweets)
        if got.truncated and got.tweets:
            progress.pending = True
            if got.kept == "newest":  # [oldest fetched, until_id) is stored: the window shrinks from above
                progress.until_id, progress.head_id = min(t.id for t in got.tweets), head_id
            else:  # (since_id, newest fetched] is stored: the window shrinks from below
                progress.since_id = max(t.id for t in got.tweets)
                progress.until_id, progress.head_id = until_id, head_id
            return progress
        progress.since_id = head_id  # the window is drained: everything up to the head is stored
        if budget <= 0:
            return progress
    got = source.fetch(target, progress.since_id, budget, deadline)
    progress.requests += got.requests
    progress.tweets += got.tweets
    newest = max((t.id for t in got.tweets), default=None)
    if got.truncated and got.tweets:
        progress.pending = True
        if got.kept == "newest":  # the newest tweets are stored; the older ones become the window
            progress.until_id, progress.head_id = min(t.id for t in got.tweets), newest
            return progress
    if newest is not None and (progress.since_id is None or newest > progress.since_id):
        progress.since_id = newest
    return progress


def next_backfill(
    before: Backfill | None,
    progress: Progress,
    *,
    since_before: int | None,
    run_id: str | None,
    now: datetime,
) -> Backfill | None:
    """The backfill cursor after this run: None once nothing is known to be left."""
    if not progress.pending:
        return None
    fetched = len(progress.tweets)
    if before is None or before.runs == 0:
        # the alert key of this backlog: where it began (a target read from scratch: when)
        episode = str(since_before) if since_before is not None else f"start-{now:%Y%m%dT%H%M}"
        return Backfill(progress.until_id, progress.head_id, 1, now.isoformat(), episode, fetched, run_id)
    rerun = run_id is not None and run_id == before.last_run  # a retry or a cleared task: counted
    return Backfill(
        progress.until_id,
        progress.head_id,
        before.runs + (0 if rerun else 1),
        before.started,
        before.episode,
        before.fetched + fetched,
        run_id,
    )


def inspect_target(
    target: dict[str, str],
    *,
    runner: ModelRunner,
    source: TweetSource,
    cursors: CursorStore,
    tasks: Sequence[str],
    settings: dict[str, Any],
    deadline: Deadline,
    reply_settings: dict[str, Any] | None = None,
    run_id: str | None = None,
    now: datetime | None = None,
    mentions: MentionsSource | None = None,
) -> dict[str, Any]:
    """Returns counts only: tweet texts never go into XCom. ``mentions`` replaces the source built
    from the ``x_api`` connection for the ``mentions:me`` target (which ignores ``source``)."""
    watched = Target(target["kind"], target["value"])  # type: ignore[arg-type]
    now = now or datetime.now(UTC)
    since_id = cursors.get(watched)
    answering: MentionsSource | None = None
    if watched.kind == "mentions":
        answering = mentions_source(source, mentions, reply_settings)
        if answering is None:
            return _not_read(watched, since_id)
        source = answering
    keeps_backfill = hasattr(cursors, "get_backfill")
    backfill: Backfill | None = cursors.get_backfill(watched) if keeps_backfill else None  # type: ignore[attr-defined]
    window = None
    if backfill is not None and backfill.window_open:
        if backfill.head_id is None or (since_id is not None and backfill.until_id <= since_id):
            # since_id was moved (or reset) by hand past the window: nothing of it is left to fetch
            log.warning("%s: backfill window below %s is stale; dropping it", watched.key, backfill.until_id)
        else:
            window = (backfill.until_id, backfill.head_id)
    limit = int(settings["max_tweets_per_target"])
    progress = fetch_bounded(source, watched, since_id, window, limit, deadline)
    if progress.until_id is not None and not keeps_backfill:
        raise TypeError(f"{type(cursors).__name__} cannot keep the backfill window that {source.name} needs")
    tweets = sorted({t.id: t for t in progress.tweets}.values(), key=lambda t: t.id)
    report: dict[str, Any] = {
        "target": watched.key,
        "source": source.name,
        "since_id_before": str(since_id) if since_id else None,
        "fetched": len(tweets),
        "truncated": progress.pending,
        "backfill_window": [str(window[0]), str(window[1])] if window else None,
        "x_api_requests": progress.requests,
    }
    inserted, predictions = 0, {}
    if tweets:
        for part in chunks([t.to_api() for t in tweets], _WRITE_CHUNK):
            inserted += int(runner.store_tweets(watched.key, list(part))["inserted"])
        batch = int(settings["inference_batch"])
        predictions, sentiment = classify_and_store(runner, tweets, tasks, batch)
        if answering is not None:  # before the cursor moves: a failed attempt's retry answers the rest
            account, post = answering.account(deadline), answering.reply
            report["replies"] = replies.answer_mentions(
                tweets,
                sentiment,
                account_id=account.id,
                settings=reply_settings or {},
                now=now,
                runner=runner,
                post=lambda text, tweet_id: post(text, tweet_id, deadline),
            )
            log.info("%s (@%s): replies %s", watched.key, account.username, report["replies"])
    # the commit point: everything fetched is stored. since_id first: it only moves over ranges
    # fetched in full, and a crash before the backfill is written leaves a window at or below the new
    # since_id, which the next run drops as stale; a window that is still open keeps its until_id.
    if progress.since_id is not None and (since_id is None or progress.since_id > since_id):
        cursors.set(watched, progress.since_id)
    after = None
    if keeps_backfill:
        after = next_backfill(backfill, progress, since_before=since_id, run_id=run_id, now=now)
        if after != backfill:
            cursors.set_backfill(watched, after)  # type: ignore[attr-defined]
    since_after = progress.since_id if progress.since_id is not None else since_id
    if progress.pending:
        log.warning(
            "%s: more than %d tweets waiting; stored %d, the rest is left to later runs"
            " (since_id %s, backfill below %s, run %d of this backlog)",
            watched.key,
            limit,
            len(tweets),
            since_after,
            progress.until_id,
            after.runs if after else 1,
        )
    elif not tweets:
        log.info("%s: nothing newer than since_id %s", watched.key, since_id)
    if tweets:
        log.info("%s: %d fetched, %d new, predictions %s", watched.key, len(tweets), inserted, predictions)
    return {
        **report,
        "new_tweets": inserted,
        "predictions": predictions,
        "since_id_after": str(since_after) if since_after is not None else None,
        "backfill_until_id": str(progress.until_id) if progress.until_id is not None else None,
        "backlog_runs": after.runs if after else 0,
        "newest_created_at": _newest_time(tweets),
    }


def _not_read(watched: Target, since_id: int | None) -> dict[str, Any]:
    since = str(since_id) if since_id is not None else None
    return {
        "target": watched.key,
        "source": None,
        "since_id_before": since,
        "fetched": 0,
        "truncated": False,
        "backfill_window": None,
        "x_api_requests": 0,
        "new_tweets": 0,
        "predictions": {},
        "since_id_after": since,
        "backfill_until_id": None,
        "backlog_runs": 0,
        "newest_created_at": None,
    }


def _newest_time(tweets: Sequence[FetchedTweet]) -> str | None:
    times = [t.created_at for t in tweets if isinstance(t.created_at, datetime)]
    return max(times).isoformat() if times else None
