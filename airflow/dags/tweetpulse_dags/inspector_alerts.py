"""After the inspector pass: daily statistics, negative-sentiment alerts and the daily digest.

A source alerts when its negative share of the day is above ``negative_share``, or more than
``negative_jump`` above its trailing ``baseline_days`` baseline (volume-weighted), once it has
``min_volume`` tweets that day. Each alert and the digest quote what people said: class shares and
the tweets nearest each class's embedding centroid (the ModelRunner's extractive summary).

A target whose tweets outrun the per-run bound for ``backlog_alert_runs`` runs in a row alerts once
per backlog: the inspector still fetches every tweet, but late.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, time, timedelta
from typing import Any

from tweetpulse_dags import emails
from tweetpulse_dags.alerting import Alert, AlertSender
from tweetpulse_dags.cursors import BackfillStore
from tweetpulse_dags.runner_api import ModelRunner
from tweetpulse_dags.sources.base import Target, slug_of

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


def backlog_incidents(targets: list[dict], cursors: BackfillStore, alert_runs: int) -> list[dict[str, Any]]:
    """Targets whose unfetched tweets outlasted ``alert_runs`` runs: the per-run bound does not keep up.

    One incident per backlog (the key holds the ``since_id`` it began at): a backlog that drains and
    later builds up again is a new incident; one that keeps growing mails once.
    """
    if alert_runs <= 0:
        return []
    found = []
    for raw in targets:
        target = Target(raw["kind"], raw["value"])  # type: ignore[arg-type]
        backfill = cursors.get_backfill(target)
        if backfill is None or backfill.runs < alert_runs:
            continue
        found.append(
            {
                "key": f"backlog:{target.slug}:{backfill.episode}",
                "found_by": target.key,
                "runs": backfill.runs,
                "started": backfill.started,
                "fetched": backfill.fetched,
                "since_id": cursors.get(target),
                "until_id": backfill.until_id,
            }
        )
    return found


def backlog_alert(incident: dict[str, Any], max_per_run: int) -> Alert:
    title = f"Inspector backlog for {incident['found_by']}: {incident['runs']} runs behind"
    since = incident["since_id"]
    if incident["until_id"] is not None:
        left = f"ids between {since if since is not None else 'the start'} and {incident['until_id']}"
        left += ", and anything newer than the stored ones"
    else:
        left = f"ids above {since}"
    facts = [
        ("Source", incident["found_by"]),
        ("Behind since (run time, UTC)", incident["started"]),
        ("Runs that hit the bound", incident["runs"]),
        ("Tweets fetched meanwhile", incident["fetched"]),
        ("Bound per run", max_per_run),
        ("Every tweet stored up to id", since if since is not None else "none"),
        ("Still to fetch", left),
    ]
    intro = (
        "More tweets arrive than the inspector fetches per run, so its backlog is not draining."
        " Nothing is skipped, but it is stored late, and the X API recent search only reaches back"
        " 7 days: raise max_tweets_per_target (Variable tweetpulse_inspector) or run more often."
    )
    html = emails.page(title, intro=intro, facts=facts)
    summary = f"{title}; {incident['fetched']} tweets fetched since {incident['started']}"
    return Alert(incident["key"], "inspector-backlog", f"[tweetpulse] {title}", html, summary)


def send_backlog_alerts(sender: AlertSender, incidents: list[dict], max_per_run: int) -> dict[str, str]:
    outcomes = {}
    for incident in incidents:
        log.warning(
            "%s: backlog for %d runs (%d tweets fetched since %s)",
            incident["found_by"],
            incident["runs"],
            incident["fetched"],
            incident["started"],
        )
        outcomes[incident["key"]] = sender.send_once(backlog_alert(incident, max_per_run))
    return outcomes
