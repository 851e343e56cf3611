"""Names of the Connections and Variables the DAGs read, their defaults, and the shared task defaults.

Precedence for a tunable value: a Param given when triggering a run > the JSON Variable > the
default here. Secrets never live in Variables: the ModelRunner token, the SMTP password and the X
bearer token are Connection passwords.
"""

from __future__ import annotations

import json
import logging
import os
import tomllib
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RUNNER_CONN_ID = "model_runner"  # HTTP connection: host, port, schema; the API token as password
SMTP_CONN_ID = "smtp_default"  # SMTP connection of the SMTP provider
X_CONN_ID = "x_api"  # X API v2: bearer token as password; optional host = API base URL override

VAR_WATCH = "tweetpulse_watch"
VAR_ALERT_TO = "tweetpulse_alert_to"
VAR_THRESHOLDS = "tweetpulse_thresholds"
VAR_INSPECTOR = "tweetpulse_inspector"
VAR_REPLAY_FILE = "tweetpulse_replay_file"
VAR_REPLY = "tweetpulse_reply"
VAR_MLFLOW_UI = "tweetpulse_mlflow_ui_url"
SINCE_ID_PREFIX = "tweetpulse_since_id__"
BACKFILL_PREFIX = "tweetpulse_backfill__"

DEFAULT_WATCH: list[dict[str, str]] = [{"query": "orbly -is:retweet lang:en"}, {"account": "orbly"}]
DEFAULT_ALERT_TO = "tweetpulse-alerts@localhost"

DEFAULT_THRESHOLDS: dict[str, float] = {
    # regression_check: registry
    "versions": 3,  # compare the champion with this many previous versions
    "macro_recall_drop": 0.05,  # alert when the champion's macro recall is this much below the best
    "class_recall_drop": 0.10,  # ... or one class's recall is this much below its best
    # regression_check: live data (last `drift_days` days of inspected tweets)
    "drift_days": 7,
    "drift_distance": 0.25,  # cosine distance between live and training embedding centroids
    "collapse_share": 0.90,  # one predicted class above this share of the tweets is a collapse
    "min_volume": 20,  # fewer tweets than this: no live-data or sentiment alert (too noisy)
    # tweet_inspector
    "negative_share": 0.50,  # alert when a source's negative share of the day is above this
    "negative_jump": 0.20,  # ... or is this much above its trailing baseline
    "baseline_days": 7,
}

DEFAULT_INSPECTOR: dict[str, Any] = {
    "max_tweets_per_target": 100,  # per run and watched account/query
    "inference_batch": 64,  # texts per POST /inference (the service allows 256)
    "digest_hour_utc": 7,  # the daily digest goes out with the first run at or after this hour
    "summary_per_class": 3,  # tweets quoted per class in alert and digest summaries
    "replay_shift_to_now": True,  # replayed tweets are moved in time so the newest is "now"
    "backlog_alert_runs": 6,  # alert once when a target still has unfetched tweets after this many runs
}

DEFAULT_REPLY: dict[str, Any] = {"enabled": False, "dry_run": True}


# The tasks the ModelRunner declares: the same TOML file it reads (TWEETPULSE_TASKS_FILE, else the
# repository's model_runner/tasks.toml beside this dags folder). Only names and schedules are used here;
# data, labels and maps are the ModelRunner's business.
TASKS_FILE_ENV = "TWEETPULSE_TASKS_FILE"
_REPO_TASKS_FILE = Path(__file__).resolve().parents[3] / "model_runner" / "tasks.toml"


def declared_tasks() -> dict[str, dict[str, Any]]:
    """Task name -> its table in the tasks file, in file order; a missing or broken file is an
    import error of the DAG (shown in the UI), never a silent default list."""
    path = Path(os.environ.get(TASKS_FILE_ENV) or _REPO_TASKS_FILE)
    with path.open("rb") as handle:
        tables = tomllib.load(handle)
    tasks = {name: table for name, table in tables.items() if isinstance(table, dict)}
    if not tasks:
        raise ValueError(f"tasks file {path} declares no task")
    return tasks


def task_names() -> list[str]:
    return list(declared_tasks())


def retrain_schedule() -> tuple[str, str | None]:
    """(task, schedule) of the scheduled retrain: the first declared task that has a schedule."""
    tasks = declared_tasks()
    for name, table in tasks.items():
        if str(table.get("schedule") or "").strip():
            return name, str(table["schedule"]).strip()
    return next(iter(tasks)), None


def default_args(**overrides: Any) -> dict[str, Any]:
    """Retries with exponential backoff and a timeout for every task (each task also sets its own)."""
    args: dict[str, Any] = {
        "owner": "tweetpulse",
        "retries": 2,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=15),
        "execution_timeout": timedelta(minutes=10),
    }
    args.update(overrides)
    return args


def get_json_variable(key: str, default: Any) -> Any:
    """A JSON Variable, or the default when it is unset; a malformed value fails loudly."""
    from airflow.sdk import Variable

    raw = Variable.get(key, default=None)
    if raw is None:
        return default
    try:
        return json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as exc:
        raise ValueError(f"Variable {key} is not valid JSON: {exc.msg}") from None


def get_variable(key: str, default: str) -> str:
    from airflow.sdk import Variable

    value = Variable.get(key, default=None)
    return default if value in (None, "") else str(value)


def merge_settings(
    defaults: Mapping[str, Any], variable: Mapping[str, Any] | None, params: Mapping[str, Any] | None
) -> dict[str, Any]:
    """defaults < Variable < non-null Params; unknown keys are an error, not silently ignored."""
    merged = dict(defaults)
    for origin, layer in (("Variable", variable or {}), ("Param", params or {})):
        if not isinstance(layer, Mapping):
            raise ValueError(f"{origin} settings must be a JSON object, got {type(layer).__name__}")
        unknown = set(layer) - set(defaults)
        if unknown:
            raise ValueError(f"unknown {origin} settings {sorted(unknown)}; known: {sorted(defaults)}")
        merged.update({k: v for k, v in layer.items() if v is not None})
    return merged


def thresholds(params: Mapping[str, Any] | None = None) -> dict[str, float]:
    relevant = {k: v for k, v in (params or {}).items() if k in DEFAULT_THRESHOLDS}
    merged = merge_settings(DEFAULT_THRESHOLDS, get_json_variable(VAR_THRESHOLDS, {}), relevant)
    bad = {k: v for k, v in merged.items() if not isinstance(v, int | float) or isinstance(v, bool) or v < 0}
    if bad:
        raise ValueError(f"thresholds must be non-negative numbers: {bad}")
    return merged


def inspector_settings() -> dict[str, Any]:
    return merge_settings(DEFAULT_INSPECTOR, get_json_variable(VAR_INSPECTOR, {}), None)


def alert_recipients() -> list[str]:
    raw = get_variable(VAR_ALERT_TO, DEFAULT_ALERT_TO)
    return [a.strip() for a in raw.replace(";", ",").split(",") if a.strip()]


def run_anchor(context) -> datetime:
    """A run's reference time: its data interval end, or when it was due for a run without one.

    Airflow 3 runs triggered through the REST API with ``logical_date: null`` have no data interval.
    """
    end = context.get("data_interval_end")
    return end if end is not None else context["dag_run"].run_after
