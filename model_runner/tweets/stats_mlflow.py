"""Daily inspection statistics in MLflow: one run per (task, source, day) in the inspector experiment.

A run is found again by its ``tweetpulse.stats_key`` tag (and remembered in the stats table), so
recomputing a day updates its run instead of creating another; unchanged days are not logged at all.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from model_runner.settings import Settings
from model_runner.tweets.stats import DailyStat

if TYPE_CHECKING:  # mlflow loads lazily: the service imports this module at start-up
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

EXPERIMENT = "tweetpulse-inspector"
KEY_TAG = "tweetpulse.stats_key"


def _experiment_id(client, settings: Settings) -> str:
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is not None:
        return exp.experiment_id
    location = None if settings.mlflow_tracking_uri else settings.artifact_root()
    return client.create_experiment(EXPERIMENT, artifact_location=location)


def _tag(stat: DailyStat) -> str:
    # a hash, because a query text (the source) may hold quotes that MLflow's filter syntax cannot escape
    return hashlib.sha256(stat.key.encode()).hexdigest()[:32]


def _find_run(client, experiment_id: str, tag: str) -> str | None:
    found = client.search_runs([experiment_id], filter_string=f"tags.`{KEY_TAG}` = '{tag}'", max_results=1)
    return found[0].info.run_id if found else None


def log_daily_stats(
    client: MlflowClient,
    settings: Settings,
    stats: list[DailyStat],
    remember: Callable[[DailyStat, str], None],
) -> int:
    """Log the changed stats (and those never logged); returns how many runs were written."""
    todo = [s for s in stats if s.changed or not s.mlflow_run_id]
    if not todo:
        return 0
    from mlflow.entities import Metric

    experiment_id = _experiment_id(client, settings)
    now = int(time.time() * 1000)
    for stat in todo:
        run_id = stat.mlflow_run_id or _find_run(client, experiment_id, _tag(stat))
        if run_id is None:
            run = client.create_run(
                experiment_id,
                run_name=f"{stat.found_by} {stat.day.isoformat()} ({stat.task})",
                tags={
                    KEY_TAG: _tag(stat),
                    "task": stat.task,
                    "found_by": stat.found_by,
                    "day": stat.day.isoformat(),
                },
            )
            run_id = run.info.run_id
            client.set_terminated(run_id)
        values = {"volume": float(stat.volume)}
        if stat.mean_confidence is not None:
            values["mean_confidence"] = float(stat.mean_confidence)
        values.update({f"share_{label}": float(v) for label, v in stat.shares.items()})
        client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in values.items()])
        remember(stat, run_id)
    log.info("logged %d daily inspection stats to MLflow experiment %s", len(todo), EXPERIMENT)
    return len(todo)
