"""One inspector pass over one watched account/query: fetch, store, classify, store, advance the cursor.

Every write goes to the ModelRunner, which commits it before answering; ``since_id`` moves only after
the last write succeeded, so a failure anywhere (or a retry) refetches the same tweets, and the
idempotent upserts store each tweet and prediction once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

from tweetpulse_dags import config
from tweetpulse_dags.cursors import CursorStore
from tweetpulse_dags.replies import reply_all, x_poster
from tweetpulse_dags.runner_api import ModelRunner
from tweetpulse_dags.sources.base import Deadline, FetchedTweet, Target, TweetSource, parse_targets

log = logging.getLogger(__name__)
T = TypeVar("T")
_WRITE_CHUNK = 500


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def load_targets() -> list[dict[str, str]]:
    """The watch list as plain dicts (they travel through XCom to the mapped tasks)."""
    raw = config.get_json_variable(config.VAR_WATCH, config.DEFAULT_WATCH)
    return [{"kind": t.kind, "value": t.value} for t in parse_targets(raw)]


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
) -> dict[str, Any]:
    """Returns counts only: tweet texts never go into XCom."""
    watched = Target(target["kind"], target["value"])  # type: ignore[arg-type]
    since_id = cursors.get(watched)
    fetched = source.fetch(watched, since_id, int(settings["max_tweets_per_target"]), deadline)
    report: dict[str, Any] = {
        "target": watched.key,
        "source": source.name,
        "since_id_before": str(since_id) if since_id else None,
        "fetched": len(fetched.tweets),
        "truncated": fetched.truncated,
        "x_api_requests": fetched.requests,
    }
    if fetched.truncated:
        log.warning("%s: more than %d new tweets; stored the newest ones", watched.key, len(fetched.tweets))
    if not fetched.tweets:
        log.info("%s: nothing newer than since_id %s", watched.key, since_id)
        return {**report, "since_id_after": report["since_id_before"]}
    inserted = 0
    for part in chunks([t.to_api() for t in fetched.tweets], _WRITE_CHUNK):
        inserted += int(runner.store_tweets(watched.key, list(part))["inserted"])
    batch = int(settings["inference_batch"])
    predictions, sentiment = classify_and_store(runner, fetched.tweets, tasks, batch)
    if reply_settings and reply_settings.get("enabled"):
        try:  # best effort, before the cursor moves: a retry answers what this attempt missed
            reply_all(
                fetched.tweets,
                sentiment,
                settings=reply_settings,
                runner=runner,
                poster_factory=lambda: x_poster(deadline),
            )
        except Exception as exc:
            log.error("replies failed for %s: %s", watched.key, exc)
    newest = fetched.newest_id
    # the commit point: everything above is stored, so the cursor may move past these tweets
    if newest is not None and (since_id is None or newest > since_id):
        cursors.set(watched, newest)
    log.info(
        "%s: %d fetched, %d new, predictions %s", watched.key, len(fetched.tweets), inserted, predictions
    )
    return {
        **report,
        "new_tweets": inserted,
        "predictions": predictions,
        "since_id_after": str(newest),
        "newest_created_at": _newest_time(fetched.tweets),
    }


def _newest_time(tweets: Sequence[FetchedTweet]) -> str | None:
    times = [t.created_at for t in tweets if isinstance(t.created_at, datetime)]
    return max(times).isoformat() if times else None
