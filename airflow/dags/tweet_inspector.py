"""tweet_inspector: pull new tweets about the watched accounts/queries, classify, aggregate, alert."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import Param, TriggerRule, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException
from tweetpulse_dags import config, inspector, inspector_alerts
from tweetpulse_dags.alerting import AlertSender, SmtpMailer
from tweetpulse_dags.cursors import VariableCursors
from tweetpulse_dags.notifiers import callbacks
from tweetpulse_dags.runner_api import ModelRunner
from tweetpulse_dags.sources.base import Deadline
from tweetpulse_dags.sources.factory import choose_source

DOC = """
### Tweet inspector

For each watched account/query (Variable `tweetpulse_watch`, a JSON list such as
`[{"query": "orbly lang:en"}, {"account": "orbly"}]`), one mapped **inspect** task:
fetch tweets newer than its `since_id` (Variable `tweetpulse_since_id__<target>`) from the X API v2
(connection `x_api`, bearer token as password) or, without credentials, from the replay file
(Variable `tweetpulse_replay_file`); store them (`POST /tweets`), classify them with every served
task (`POST /inference`), store the predictions (`POST /predictions`; unsure ones join the review
queue), and only then advance `since_id`. A 429 waits for the rate-limit reset when it fits in the
task's timeout.

A run fetches at most `max_tweets_per_target` per target. When more are waiting it stores the newest
ones and leaves the older rest as a backfill window (Variable `tweetpulse_backfill__<target>`) that
the next runs fetch first; `since_id` never moves past an unfetched tweet. **alert_backlog** mails
once per backlog when a target is still behind after `backlog_alert_runs` runs.

**aggregate** recomputes per source and day volume, class shares and mean confidence (stored and
logged to the MLflow experiment `tweetpulse-inspector`); **alert_negative** mails once per source and
day when the negative share is above `negative_share` or jumps `negative_jump` above the trailing
baseline; **daily_digest** mails once a day. Every mail quotes what people said: class shares and the
tweets nearest each class centroid. Schedule: env `TWEETPULSE_INSPECTOR_SCHEDULE` (default `@hourly`).

Optional replies (Variable `tweetpulse_reply`, off; dry run by default) go only to tweets that mention
the account, per X's automation rules: with replies on, one more mapped **inspect** reads
`mentions:me` (user-context keys in `x_api`'s extra) and answers each mention once through the alert
ledger; tweets of watched queries, accounts and the replay file are never answered.

A run that fails (a target failed after its retries, the ModelRunner down) mails once per incident
(`on_failure_callback`); a successful run closes the incident, so the next failure mails again.
"""

INSPECT_TIMEOUT = timedelta(minutes=15)


def _runner() -> ModelRunner:
    return ModelRunner.from_connection(config.RUNNER_CONN_ID)


def _anchor() -> datetime:
    """The run's reference time: its data interval end (the trigger time for manual runs)."""
    return config.run_anchor(get_current_context())


@dag(
    dag_id="tweet_inspector",
    schedule=os.environ.get("TWEETPULSE_INSPECTOR_SCHEDULE", "@hourly"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["tweetpulse", "inspection"],
    doc_md=DOC,
    default_args=config.default_args(),
    **callbacks(),  # a failed run mails once per incident; a successful run closes it
    params={
        "source": Param("auto", enum=["auto", "x", "replay"], description="auto: X when x_api is set"),
        "max_tweets": Param(
            None, type=["null", "integer"], minimum=1, maximum=10_000, description="Per target"
        ),
        "digest": Param(
            "auto", enum=["auto", "now", "skip"], description="auto: once a day after digest hour"
        ),
    },
)
def tweet_inspector():
    @task(execution_timeout=timedelta(minutes=2))
    def load_targets() -> list[dict]:
        return inspector.load_targets()

    @task(execution_timeout=timedelta(minutes=2))
    def served_tasks() -> list[str]:
        with _runner() as runner:
            return inspector.served_tasks(runner)

    @task(execution_timeout=INSPECT_TIMEOUT, max_active_tis_per_dagrun=4)
    def inspect(target: dict, tasks: list[str], params=None) -> dict:
        deadline = Deadline(INSPECT_TIMEOUT.total_seconds() - 60)  # keep a minute to store and exit
        settings = config.inspector_settings()
        if params.get("max_tweets"):
            settings["max_tweets_per_target"] = params["max_tweets"]
        source = choose_source(params["source"], _anchor(), settings)
        reply = config.merge_settings(
            config.DEFAULT_REPLY, config.get_json_variable(config.VAR_REPLY, {}), None
        )
        with _runner() as runner:
            return inspector.inspect_target(
                target,
                runner=runner,
                source=source,
                cursors=VariableCursors(),
                tasks=tasks,
                settings=settings,
                deadline=deadline,
                reply_settings=reply,
                run_id=get_current_context()["run_id"],
                now=_anchor(),
            )

    @task(trigger_rule=TriggerRule.ALL_DONE, execution_timeout=timedelta(minutes=5))
    def alert_backlog(targets: list[dict] | None, params=None) -> dict:
        """Once per backlog: a target still had unfetched tweets after `backlog_alert_runs` runs."""
        if not targets:
            raise AirflowSkipException("no watch list")
        settings = config.inspector_settings()
        bound = int(params.get("max_tweets") or settings["max_tweets_per_target"])
        cursors = VariableCursors()
        incidents = inspector_alerts.backlog_incidents(targets, cursors, int(settings["backlog_alert_runs"]))
        if not incidents:
            return {}
        with _runner() as runner:
            sender = AlertSender(runner, SmtpMailer(config.SMTP_CONN_ID), config.alert_recipients())
            return inspector_alerts.send_backlog_alerts(sender, incidents, bound)

    @task(trigger_rule=TriggerRule.ALL_DONE, execution_timeout=timedelta(minutes=10))
    def aggregate(tasks: list[str] | None) -> dict:
        if tasks is None:  # served_tasks skipped: no model yet, nothing was classified
            raise AirflowSkipException("no served model: nothing to aggregate")
        th = config.thresholds()
        with _runner() as runner:
            return inspector_alerts.aggregate(runner, tasks, _anchor(), int(th["baseline_days"]))

    @task(trigger_rule=TriggerRule.ALL_DONE, execution_timeout=timedelta(minutes=10))
    def alert_negative(stats: dict | None) -> dict:
        if stats is None:
            raise AirflowSkipException("no statistics this run")
        th, settings = config.thresholds(), config.inspector_settings()
        incidents = inspector_alerts.negative_incidents(stats.get("sentiment", []), _anchor(), th)
        with _runner() as runner:
            sender = AlertSender(runner, SmtpMailer(config.SMTP_CONN_ID), config.alert_recipients())
            per_class = int(settings["summary_per_class"])
            return inspector_alerts.send_negative_alerts(runner, sender, incidents, _anchor(), per_class)

    @task(trigger_rule=TriggerRule.ALL_DONE, execution_timeout=timedelta(minutes=10))
    def daily_digest(targets: list[dict], params=None) -> str:
        settings = config.inspector_settings()
        if not inspector_alerts.digest_due(params["digest"], _anchor(), int(settings["digest_hour_utc"])):
            return "not due"
        sources = [f"{t['kind']}:{t['value']}" for t in targets]
        with _runner() as runner:
            sender = AlertSender(runner, SmtpMailer(config.SMTP_CONN_ID), config.alert_recipients())
            return inspector_alerts.send_digest(
                runner, sender, sources, _anchor(), int(settings["summary_per_class"])
            )

    @task(execution_timeout=timedelta(minutes=2))
    def inspection_complete(results: list[dict]) -> dict:
        """Fails the run (via upstream_failed) when any target failed, though stats and alerts ran."""
        return {"targets": len(results), "fetched": sum(r["fetched"] for r in results)}

    targets, tasks = load_targets(), served_tasks()
    results = inspect.partial(tasks=tasks).expand(target=targets)
    results >> alert_backlog(targets)
    stats = aggregate(tasks)
    results >> stats
    alerts = alert_negative(stats)
    digest = daily_digest(targets)
    alerts >> digest
    inspection_complete(results)


tweet_inspector()
