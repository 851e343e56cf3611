"""One e-mail per incident when a DAG run fails, whatever failed (the ModelRunner included).

``IncidentNotifier`` is every DAG's ``on_failure_callback``: the first failed run of a DAG opens an
incident and mails (SMTP connection ``smtp_default``, recipients Variable ``tweetpulse_alert_to``);
later failed runs of that DAG mail nothing while the incident is open. ``IncidentCloser`` is the
``on_success_callback``: a successful run closes the incident, so the next failure mails again.

The open incident is an Airflow Variable, ``tweetpulse_incident__<dag_id>`` (JSON: the run that opened
it, when, and what failed), kept in Airflow's metadata database: it works while the ModelRunner (and
its alert ledger) is down, which is when this mail matters most. The Variable is written after the mail
went out, so a failed send is tried again by the next failed run rather than lost; delete the
Variable to re-arm the alert by hand.

This mail is about the pipeline (a task failed after its retries). The domain alerts (a failed
training, a regression, drift, a negative day) are separate, keyed in the ModelRunner's ledger; a run
that sent its domain alert succeeded, so the two never describe the same event twice.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import BaseNotifier

from tweetpulse_dags import config, emails
from tweetpulse_dags.alerting import Mailer, SmtpMailer, message_headers

log = logging.getLogger(__name__)

INCIDENT_PREFIX = "tweetpulse_incident__"


def incident_variable(dag_id: str) -> str:
    return f"{INCIDENT_PREFIX}{dag_id}"


def _variables():
    """The Variable API for this process. Callbacks run in a supervised process (the dag-processor, a
    worker) where the Task SDK's ``Variable`` talks to Airflow through its supervisor; ``dag.test()``
    and ``airflow dags test`` run DAG callbacks in their own process, which has no supervisor but the
    metadata database itself: there the core model does the same."""
    from airflow.sdk.execution_time import task_runner

    if getattr(task_runner, "SUPERVISOR_COMMS", None) is not None:
        from airflow.sdk import Variable

        return Variable
    return _CoreVariables


class _CoreVariables:
    @staticmethod
    def get(key: str, default: Any = None) -> Any:
        from airflow.models import Variable

        return Variable.get(key, default_var=default)

    @staticmethod
    def set(key: str, value: str) -> None:
        from airflow.models import Variable

        Variable.set(key, value)

    @staticmethod
    def delete(key: str) -> None:
        from airflow.models import Variable

        Variable.delete(key)


def _failed_tasks(context: Any) -> list[str]:
    run = context.get("dag_run")
    try:
        tis = run.get_task_instances(state=["failed", "upstream_failed"]) if run is not None else []
    except Exception:  # the SDK's DagRun view has no task instances: fall back to the one we know
        tis = []
    names = [f"{ti.task_id}[{ti.map_index}]" if ti.map_index >= 0 else ti.task_id for ti in tis]
    if not names and context.get("ti") is not None:
        names = [context["ti"].task_id]
    return names


class _Notifier(BaseNotifier):
    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        # nothing to render; and dag.test() hands a SerializedDAG, which has no template env
        if self.template_fields:
            super().render_template_fields(context, jinja_env)


class IncidentNotifier(_Notifier):
    """Mails once when a DAG's runs start failing; quiet until a run succeeds again."""

    def __init__(self, mailer: Mailer | None = None):
        super().__init__()
        self.mailer = mailer

    def notify(self, context: Any) -> None:
        dag_id = context["dag"].dag_id
        run_id = context.get("run_id") or getattr(context.get("dag_run"), "run_id", "?")
        key = incident_variable(dag_id)
        Variable = _variables()
        opened = Variable.get(key, default=None)
        if opened:
            log.warning(
                "%s failed again (run %s); incident open since %s: no new mail", dag_id, run_id, opened
            )
            return
        failed = _failed_tasks(context)
        reason = str(context.get("reason") or "task_failure")
        incident = {"run_id": run_id, "opened_at": datetime.now(UTC).isoformat(), "failed": failed}
        try:  # a link is a nicety: never let it cost the mail
            log_url = getattr(context.get("ti"), "log_url", None)
        except Exception:
            log_url = None
        facts = [
            ("DAG", dag_id),
            ("Run", run_id),
            ("Failed tasks", ", ".join(failed) or "unknown"),
            ("Reason", reason),
            ("Opened at", incident["opened_at"]),
        ]
        sections = [f"<p>{emails.link(log_url, 'Open the task log')}</p>"] if log_url else []
        html = emails.page(
            f"{dag_id} failed",
            intro=(
                "A run of this DAG failed after its retries. Further failures send nothing until a run "
                f"succeeds again (or the Variable {key} is deleted)."
            ),
            facts=facts,
            sections=sections,
        )
        subject = f"[tweetpulse] DAG {dag_id} failing since run {run_id}"
        mailer = self.mailer or SmtpMailer(config.SMTP_CONN_ID)
        mailer.send(
            config.alert_recipients(), subject, html, message_headers(f"dag-failed:{dag_id}:{run_id}")
        )
        Variable.set(key, json.dumps(incident))
        log.info("incident opened for %s by run %s: mail sent", dag_id, run_id)


class IncidentCloser(_Notifier):
    """A successful run closes the DAG's open incident (the next failure mails again)."""

    def notify(self, context: Any) -> None:
        dag_id = context["dag"].dag_id
        Variable = _variables()
        key = incident_variable(dag_id)
        if Variable.get(key, default=None) is not None:
            Variable.delete(key)
            log.info("incident of %s closed by run %s", dag_id, context.get("run_id"))


def callbacks() -> dict[str, Any]:
    """The DAG-level ``on_failure_callback`` / ``on_success_callback`` pair every DAG uses."""
    return {"on_failure_callback": IncidentNotifier(), "on_success_callback": IncidentCloser()}
