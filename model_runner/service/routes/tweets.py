"""Routes the Airflow DAGs use for tweets, predictions, statistics, drift and the review queue.

Every route is a plain ``def``: FastAPI runs it in its thread pool, so database work and embedding
(drift, summaries) never block the event loop. Writes need the admin bearer token.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool

from model_runner.service.auth import require_admin
from model_runner.service.deps import ComponentsDep, StateDep, TaskQuery, declared_task
from model_runner.service.errors import Conflict, Unprocessable
from model_runner.service.schemas import (
    MAX_OFFSET,
    AlertClaim,
    AlertFinished,
    AlertList,
    AlertsResolved,
    ClaimRequest,
    DailyStatsComputed,
    DailyStatsPage,
    DailyStatsRequest,
    DriftReferencePrepared,
    DriftView,
    FinishRequest,
    LabelsImported,
    LabelsRequest,
    PredictionsRequest,
    PredictionsStored,
    ResolveRequest,
    ReviewPage,
    SaneDate,
    SaneDatetime,
    TweetsRequest,
    TweetsStored,
    TweetsSummary,
)
from model_runner.service.text_input import SafeStr, SanitizingRoute
from model_runner.tweets import alerts

router = APIRouter(tags=["pipeline"], route_class=SanitizingRoute)
admin = [Depends(require_admin)]
log = logging.getLogger(__name__)


def _window(since: datetime | None, until: datetime | None, default_days: float):
    from model_runner.tweets.window import Window

    try:
        return Window.between(since, until, default_days=default_days)
    except ValueError as exc:
        raise Unprocessable(str(exc)) from None


@router.post(
    "/tweets",
    response_model=TweetsStored,
    dependencies=admin,
    summary="Upsert inspected tweets (idempotent by tweet id)",
)
async def post_tweets(state: StateDep, body: TweetsRequest):
    """Stores the tweets, then computes the vectors drift and summaries read (only missing ones)."""
    from model_runner.tweets.tweets import Tweet, upsert_tweets
    from model_runner.tweets.window import as_utc

    components = state.components
    tweets = [
        Tweet(t.id, t.text, body.found_by, t.author, as_utc(t.created_at) if t.created_at else None)
        for t in body.tweets
    ]
    stored = await run_in_threadpool(upsert_tweets, components.db, tweets)
    embedded = 0
    if tweets:
        texts = list(dict.fromkeys(t.text for t in tweets))
        # torch runs on the inference thread (the service's torch-thread rule); a failure here leaves
        # the tweets stored and the vectors for a later call
        loop = asyncio.get_running_loop()
        try:
            embedded = await loop.run_in_executor(state.executor, _embed_missing, components, texts)
        except Exception as exc:
            log.warning("stored %d tweets without vectors: %s", len(tweets), type(exc).__name__)
    return {**asdict(stored), "embedded": embedded}


def _embed_missing(components, texts: list[str]) -> int:
    components.embeddings.get_or_compute(texts)
    return components.embeddings.last_stats.computed


@router.post(
    "/predictions",
    response_model=PredictionsStored,
    dependencies=admin,
    summary="Upsert predictions of stored tweets; those below the review threshold join the review queue",
)
def post_predictions(components: ComponentsDep, body: PredictionsRequest):
    from model_runner.tweets.predictions import TweetPrediction, upsert_predictions

    declared_task(components.settings, body.task)
    preds = [TweetPrediction(p.tweet_id, p.label, p.scores) for p in body.predictions]
    threshold = components.settings.review_threshold
    # UnknownTweets: 422 naming the tweet ids
    result = upsert_predictions(
        components.db, body.task, body.model_version, preds, review_threshold=threshold
    )
    return {**asdict(result), "review_threshold": threshold}


@router.get(
    "/review",
    response_model=ReviewPage,
    summary="The review queue: inspected tweets the model was unsure about",
)
def get_review(
    components: ComponentsDep,
    task: TaskQuery,
    limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
):
    from model_runner.tweets.review import list_review

    total, items = list_review(components.db, task, limit=limit, offset=offset)
    rows = [{**asdict(i), "tweet_id": str(i.tweet_id), "queued_at": i.queued_at.isoformat()} for i in items]
    return {"task": task, "total": total, "items": rows}


@router.post(
    "/labels",
    response_model=LabelsImported,
    dependencies=admin,
    summary="Labelled feedback: joins the next retrain",
)
def post_labels(components: ComponentsDep, body: LabelsRequest):
    from model_runner.tasks import get_task
    from model_runner.tweets.review import LabelItem, import_labels

    task = get_task(body.task, components.settings)
    items = [LabelItem(i.label, i.text, i.tweet_id) for i in body.items]
    # InvalidLabels: 422 listing the problems, nothing imported
    result = import_labels(components.db, task.name, items, allowed_labels=task.labels or None)
    return {**asdict(result), "unknown_tweets": [str(t) for t in result.unknown_tweets]}


@router.post(
    "/stats/daily",
    response_model=DailyStatsComputed,
    dependencies=admin,
    summary="Recompute daily inspection statistics (per source and UTC day), store and log them to MLflow",
)
def post_daily_stats(components: ComponentsDep, body: DailyStatsRequest):
    from model_runner.tweets.stats import compute_daily_stats, set_mlflow_run, store_daily_stats
    from model_runner.tweets.stats_mlflow import EXPERIMENT, log_daily_stats

    last = body.until or datetime.now(UTC).date()
    first = last - timedelta(days=body.days - 1)
    db = components.db
    declared_task(components.settings, body.task)
    stats = store_daily_stats(db, compute_daily_stats(db, body.task, first, last, found_by=body.found_by))
    logged = 0
    if body.log_to_mlflow:
        logged = log_daily_stats(
            components.mlflow, components.settings, stats, lambda s, run: set_mlflow_run(db, s, run)
        )
    return {
        "task": body.task,
        "first_day": first.isoformat(),
        "last_day": last.isoformat(),
        "rows": [s.to_dict() for s in stats],
        "served_rows": _served_rows(db, body.task, first, last, body.found_by),
        "changed": sum(s.changed for s in stats),
        "logged_to_mlflow": logged,
        "mlflow_experiment": EXPERIMENT,
    }


@router.get("/stats/daily", response_model=DailyStatsPage, summary="Stored daily inspection statistics")
def get_daily_stats(
    components: ComponentsDep,
    task: TaskQuery,
    days: int = Query(8, ge=1, le=366),
    until: SaneDate | None = None,
    found_by: SafeStr | None = Query(None, min_length=1, max_length=300),
):
    from model_runner.tweets.stats import read_daily_stats

    last = until or datetime.now(UTC).date()
    first = last - timedelta(days=days - 1)
    rows = read_daily_stats(components.db, task, first, last, found_by=found_by)
    return {
        "task": task,
        "first_day": first.isoformat(),
        "last_day": last.isoformat(),
        "rows": [r.to_dict() for r in rows],
        "served_rows": _served_rows(components.db, task, first, last, found_by),
    }


def _served_rows(db, task: str, first, last, found_by: str | None) -> list[dict]:
    """Served traffic's daily statistics; a request for one watched source gets none."""
    from model_runner.tweets.stats import SERVED, served_daily_stats

    if found_by not in (None, SERVED):
        return []
    return [s.to_dict() for s in served_daily_stats(db, task, first, last)]


@router.post(
    "/drift/reference",
    response_model=DriftReferencePrepared,
    dependencies=admin,
    summary="Prepare drift's training reference: record the task's dataset if none is stored, embed"
    " what lacks a vector (feedback rows). GET /drift only reads what is there.",
)
async def prepare_drift_reference(state: StateDep, task: TaskQuery):
    from model_runner.service.model_manager import in_own_thread

    components = state.components
    # one-off torch work on a thread that ends with it (the torch-thread rule of the service)
    return await in_own_thread(_prepare_reference, components, task)


def _prepare_reference(components, task: str) -> dict:
    from model_runner.data import DataError
    from model_runner.jobs.embed import embed_dataset
    from model_runner.tasks import get_task
    from model_runner.tweets.drift import embed_reference, reference_size

    recorded, notes = False, []
    if reference_size(components.embeddings, task) == 0:
        try:
            embed_dataset(components, get_task(task, components.settings))
            recorded = True
        except (DataError, FileNotFoundError, ValueError) as exc:
            log.warning("drift without a reference for %s: %s", task, exc)
            notes.append(f"no training reference: {type(exc).__name__}")
    embedded = embed_reference(components.embeddings, task)
    return {"task": task, "recorded_dataset": recorded, "embedded": embedded, "notes": notes}


@router.get(
    "/drift",
    response_model=DriftView,
    summary="Recent tweets and served traffic vs training data: centroid cosine distance and class shares",
)
def get_drift(
    components: ComponentsDep,
    task: TaskQuery,
    days: float = Query(7, gt=0, le=90),
    until: SaneDatetime | None = None,
):
    """Reads only: tweets are embedded when stored, the reference by ``POST /drift/reference``. Each
    source (inspected tweets, sampled /inference answers) is in ``sources``; the class-share fields
    describe the more one-sided of them (``source``), so either one's collapse shows."""
    from model_runner.tweets.drift import drift_report
    from model_runner.tweets.window import Window

    report = drift_report(components.vectors, task, Window.last_days(days, until))
    inspected = next(s for s in report.sources if s.source == "inspected")
    notes = []
    if inspected.volume and report.reference_embedded == 0:
        notes.append("no embedded training reference: POST /drift/reference prepares it")
    if report.live_embedded < inspected.volume:
        notes.append(f"{inspected.volume - report.live_embedded} tweets of the window have no vector yet")
    if report.source == "served":
        notes.append(
            f"class shares of {report.live_tweets} served predictions (the more one-sided source);"
            f" the centroid distance is the {inspected.volume} inspected tweets'"
        )
    return {**report.to_dict(), "notes": notes}


@router.get(
    "/tweets/summary",
    response_model=TweetsSummary,
    summary="What people said: volume, class shares, tweets nearest each centroid",
)
def get_summary(
    components: ComponentsDep,
    task: TaskQuery,
    since: SaneDatetime | None = None,
    until: SaneDatetime | None = None,
    found_by: SafeStr | None = Query(None, min_length=1, max_length=300),
    per_class: int = Query(3, ge=1, le=20),
):
    from model_runner.tweets.summary import summarise

    window = _window(since, until, 1)
    found = summarise(components.vectors, task, window, found_by=found_by, per_class=per_class)
    return found.to_dict()


@router.post(
    "/alerts/claim",
    response_model=AlertClaim,
    dependencies=admin,
    summary="Claim an incident's alert: granted once",
)
def claim_alert(components: ComponentsDep, body: ClaimRequest):
    claim = alerts.claim(components.db, body.key, body.kind, body.summary, lease_s=body.lease_s)
    out = asdict(claim)
    out["sent_at"] = claim.sent_at.isoformat() if claim.sent_at else None
    return out


@router.post(
    "/alerts/confirm", response_model=AlertFinished, dependencies=admin, summary="The claimed alert was sent"
)
def confirm_alert(components: ComponentsDep, body: FinishRequest):
    if not alerts.confirm(components.db, body.key, body.token):
        raise Conflict(f"alert {body.key} is not claimed with this token")
    return {"key": body.key, "state": "sent"}


@router.post(
    "/alerts/release",
    response_model=AlertFinished,
    dependencies=admin,
    summary="Sending failed: let a retry claim it again",
)
def release_alert(components: ComponentsDep, body: FinishRequest):
    if not alerts.release(components.db, body.key, body.token):
        raise Conflict(f"alert {body.key} is not claimed with this token")
    return {"key": body.key, "state": "released"}


@router.post(
    "/alerts/resolve",
    response_model=AlertsResolved,
    dependencies=admin,
    summary="Conditions cleared: a recurrence alerts again",
)
def resolve_alerts(components: ComponentsDep, body: ResolveRequest):
    return {"resolved": alerts.resolve(components.db, body.keys)}


@router.get("/alerts", response_model=AlertList, summary="Recent incidents of the alert ledger")
def list_alerts(
    components: ComponentsDep,
    kind: SafeStr | None = Query(None, max_length=50),
    limit: int = Query(50, ge=1, le=500),
):
    rows = alerts.recent(components.db, kind=kind, limit=limit)
    iso = [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r.items()} for r in rows]
    return {"alerts": iso}
