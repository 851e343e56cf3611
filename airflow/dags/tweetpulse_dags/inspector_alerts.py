"""After the inspector pass: daily statistics, negative-sentiment alerts and the daily digest.

A source alerts when its negative share of the day is above ``negative_share``, or more than
``negative_jump`` above its trailing ``baseline_days`` baseline (volume-weighted), once it has
``min_volume`` tweets that day. Each alert and the digest quote what people said: class shares and
the tweets nearest each class's embedding centroid (the ModelRunner's extractive summary).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, time, timedelta
from typing import Any

from tweetpulse_dags import emails
from tweetpulse_dags.alerting import Alert, AlertSender
from tweetpulse_dags.runner_api import ModelRunner
from tweetpulse_dags.sources.base import slug_of

log = logging.getLogger(__name__)
NEGATIVE = "negative"


def aggregate(runner: ModelRunner, tasks: list[str], anchor: datetime, baseline_days: int) -> dict[str, list]:
    """Recompute (and log to MLflow) the stats of the anchor day and its baseline, per served task."""
    out = {}
    for task in tasks:
        answer = runner.daily_stats(task, days=int(baseline_days) + 1, until=anchor.date().isoformat())
        out[task] = answer["rows"]
        for row in answer["rows"]:
            if row["day"] == anchor.date().isoformat():
                shares = ", ".join(f"{k} {emails.pct(v)}" for k, v in row["shares"].items())
                log.info("%s %s %s: %d tweets, %s", task, row["found_by"], row["day"], row["volume"], shares)
        logged = answer["logged_to_mlflow"]
        log.info("%s: %d daily rows, %d logged to MLflow", task, len(answer["rows"]), logged)
    return out


def negative_incidents(rows: list[dict], anchor: datetime, th: dict[str, float]) -> list[dict[str, Any]]:
    today = anchor.date().isoformat()
    found = []
    for source in sorted({r["found_by"] for r in rows}):
        mine = [r for r in rows if r["found_by"] == source]
        current = next((r for r in mine if r["day"] == today), None)
        if current is None or current["volume"] < th["min_volume"] or NEGATIVE not in current["shares"]:
            continue
        share = current["shares"][NEGATIVE]
        past = [r for r in mine if r["day"] < today]
        volume = sum(r["volume"] for r in past)
        negatives = sum(r["counts"].get(NEGATIVE, 0) for r in past)
        baseline = negatives / volume if volume >= th["min_volume"] else None
        reasons = []
        if share > th["negative_share"]:
            reasons.append(f"negative share {emails.pct(share)} above {emails.pct(th['negative_share'])}")
        if baseline is not None and share - baseline > th["negative_jump"]:
            days = int(th["baseline_days"])
            reasons.append(
                f"up {100 * (share - baseline):.1f} points on the {days}-day baseline {emails.pct(baseline)}"
            )
        if reasons:
            found.append(
                {
                    "key": f"negative:{slug_of(source)}:{today}",
                    "found_by": source,
                    "day": today,
                    "share": share,
                    "baseline": baseline,
                    "volume": current["volume"],
                    "reasons": reasons,
                }
            )
    return found


def day_window(anchor: datetime) -> tuple[str, str]:
    start = datetime.combine(anchor.date(), time.min, UTC)
    return start.isoformat(), max(anchor, start + timedelta(seconds=1)).isoformat()


def negative_alert(incident: dict[str, Any], summary: dict | None) -> Alert:
    title = f"Negative sentiment for {incident['found_by']} on {incident['day']}"
    facts = [
        ("Source", incident["found_by"]),
        ("Day (UTC)", incident["day"]),
        ("Tweets so far", incident["volume"]),
        ("Negative share", emails.pct(incident["share"])),
        ("Trailing baseline", emails.pct(incident["baseline"])),
        ("Why", "; ".join(incident["reasons"])),
    ]
    html = emails.page(title, facts=facts, sections=[emails.summary_section(summary)])
    why = "; ".join(incident["reasons"])
    return Alert(incident["key"], "negative-sentiment", f"[tweetpulse] {title}", html, f"{title}: {why}")


def send_negative_alerts(
    runner: ModelRunner, sender: AlertSender, incidents: list[dict], anchor: datetime, per_class: int
) -> dict[str, str]:
    since, until = day_window(anchor)
    outcomes = {}
    for incident in incidents:
        source = incident["found_by"]
        summary = runner.summary("sentiment", since, until, found_by=source, per_class=per_class)
        log.info("what people said about %s:\n%s", incident["found_by"], emails.summary_text(summary))
        outcomes[incident["key"]] = sender.send_once(negative_alert(incident, summary))
    return outcomes


def digest_due(mode: str, anchor: datetime, digest_hour: int) -> bool:
    if mode not in ("auto", "now", "skip"):
        raise ValueError(f"unknown digest mode {mode!r}; use auto, now or skip")
    return mode == "now" or (mode == "auto" and anchor.hour >= int(digest_hour))


def send_digest(
    runner: ModelRunner, sender: AlertSender, sources: list[str], anchor: datetime, per_class: int
) -> str:
    """One digest per UTC day (the ledger key is the day): the last 24 hours, overall and per source."""
    since, until = (anchor - timedelta(hours=24)).isoformat(), anchor.isoformat()
    overall = runner.summary("sentiment", since, until, per_class=per_class)
    log.info("daily digest, all sources:\n%s", emails.summary_text(overall))
    sections = [emails.summary_section(overall, "All watched sources")]
    for source in sources:
        summary = runner.summary("sentiment", since, until, found_by=source, per_class=per_class)
        sections.append(emails.summary_section(summary, source))
    day = anchor.date().isoformat()
    title = f"Daily digest {day}: {overall['volume']} tweets"
    html = emails.page(title, intro=f"Tweets from {since[:16]} to {until[:16]} UTC.", sections=sections)
    return sender.send_once(Alert(f"digest:{day}", "digest", f"[tweetpulse] {title}", html, title))
