"""Exactly one e-mail per incident, through the SMTP provider, whoever retries.

The ledger is the ModelRunner's ``/alerts`` (Postgres): claim the incident key, send, confirm; on a
send failure release the claim so the retry sends. A claim still pending from a crashed attempt is
"in flight": the task fails and Airflow retries after the claim's lease. When the ledger itself is
unreachable the alert is sent anyway (an outage alert must not be swallowed) with a Message-ID derived
from the key, so a mail client can still collapse a rare duplicate.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Literal, Protocol

from tweetpulse_dags.config import SMTP_CONN_ID
from tweetpulse_dags.runner_api import ModelRunner
from tweetpulse_dags.runner_client import RunnerError

log = logging.getLogger(__name__)

DEFAULT_FROM = "tweetpulse@localhost"
Outcome = Literal["sent", "already_sent", "sent_without_ledger"]


class AlertInFlight(RuntimeError):
    """Another attempt claimed this alert moments ago and has not confirmed it yet."""


@dataclass(frozen=True)
class Alert:
    key: str  # the incident: one e-mail per key, e.g. "training-failed:<job id>"
    kind: str
    subject: str
    html: str
    summary: str  # one line for the ledger and the task log


class Mailer(Protocol):
    def send(self, to: list[str], subject: str, html: str, headers: dict[str, str]) -> None: ...


class SmtpMailer:
    """The SMTP provider's hook on the ``smtp_default`` connection (from address: its ``from_email``)."""

    def __init__(self, conn_id: str = SMTP_CONN_ID):
        self.conn_id = conn_id

    def send(self, to: list[str], subject: str, html: str, headers: dict[str, str]) -> None:
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        with SmtpHook(smtp_conn_id=self.conn_id) as hook:
            hook.send_email_smtp(
                to=to,
                subject=subject,
                html_content=html,
                from_email=hook.from_email or DEFAULT_FROM,
                custom_headers=headers,
            )


def message_headers(key: str) -> dict[str, str]:
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return {"Message-ID": f"<{digest}@tweetpulse.alerts>", "X-Tweetpulse-Alert-Key": key}


class AlertSender:
    def __init__(self, runner: ModelRunner, mailer: Mailer, recipients: list[str], *, lease_s: float = 90):
        if not recipients:
            raise ValueError("no alert recipients (Variable tweetpulse_alert_to)")
        self.runner, self.mailer, self.recipients, self.lease_s = runner, mailer, recipients, lease_s

    def _mail(self, alert: Alert) -> None:
        self.mailer.send(self.recipients, alert.subject, alert.html, message_headers(alert.key))

    def send_once(self, alert: Alert) -> Outcome:
        try:
            claim = self.runner.claim_alert(alert.key, alert.kind, alert.summary, self.lease_s)
        except RunnerError as exc:
            if exc.status is not None and exc.status < 500:
                raise  # our request is wrong (bad key, bad token): a bug to fix, not to paper over
            log.error("alert ledger unreachable (%s); sending %s without de-duplication", exc, alert.key)
            self._mail(alert)
            return "sent_without_ledger"
        if not claim["granted"]:
            if claim["state"] == "pending":
                raise AlertInFlight(f"alert {alert.key} is being sent by another attempt; retry later")
            log.info("alert %s was already sent (%s); not sending again", alert.key, claim.get("sent_at"))
            return "already_sent"
        try:
            self._mail(alert)
        except Exception:
            try:
                self.runner.release_alert(alert.key, claim["token"])
            except RunnerError as exc:
                log.error("could not release %s (%s); the claim frees itself after its lease", alert.key, exc)
            raise
        try:
            self.runner.confirm_alert(alert.key, claim["token"])
        except RunnerError as exc:
            # the mail went out: failing the task now would only invite a duplicate
            log.error("alert %s sent but not confirmed in the ledger: %s", alert.key, exc)
        log.info("alert sent: %s", alert.summary)
        return "sent"
