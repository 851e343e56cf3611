"""The daily regression and drift check: decisions only; the DAG fetches and alerting sends.

Incidents are keyed so that one condition mails once: a regressed champion per (task, version); drift
and collapse per (task, champion version) until the condition clears (then the key is resolved and a
recurrence mails again).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from tweetpulse_dags import emails
from tweetpulse_dags.alerting import Alert
from tweetpulse_dags.runner_api import ModelRunner, ModelVersion

log = logging.getLogger(__name__)


@dataclass
class Incident:
    key: str
    kind: str
    title: str
    facts: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        # plain lists: XCom would otherwise carry the fact tuples in its own tagged encoding
        return {**asdict(self), "facts": [[name, value] for name, value in self.facts]}


def targets(runner: ModelRunner) -> list[str]:
    """Every task the ModelRunner declares and serves that has a champion, in declared order."""
    chosen = [
        declared["name"]
        for declared in runner.declared_tasks()
        if declared.get("served", True) and runner.champion_version(declared["name"])
    ]
    log.info("checking %s", ", ".join(chosen) or "nothing: no task has a champion")
    return chosen


def champion_of(versions: list[ModelVersion]) -> ModelVersion | None:
    return next((v for v in versions if "champion" in (v.get("aliases") or [])), None)


def registry_incidents(task: str, versions: list[ModelVersion], th: dict[str, float]) -> list[Incident]:
    """The champion against the best of the ``versions`` registered before it."""
    champion = champion_of(versions)
    if champion is None:
        log.warning("no champion registered for %s: nothing to compare", task)
        return []
    number = int(champion["version"])
    previous = sorted((v for v in versions if int(v["version"]) < number), key=lambda v: -int(v["version"]))[
        : int(th["versions"])
    ]
    mine = champion.get("metrics") or {}
    facts: list[tuple[str, str]] = []
    checks = [("macro_recall", th["macro_recall_drop"])] + [
        (name, th["class_recall_drop"]) for name in sorted(mine) if name.startswith("recall_")
    ]
    for metric, allowed in checks:
        history = [(v["version"], v["metrics"][metric]) for v in previous if metric in (v["metrics"] or {})]
        if metric not in mine or not history:
            continue
        best_version, best = max(history, key=lambda h: h[1])
        drop = best - mine[metric]
        log.info(
            "%s v%s %s %.4f; best before: v%s %.4f", task, number, metric, mine[metric], best_version, best
        )
        if drop > allowed:
            what = f"{mine[metric]:.4f} vs {best:.4f} in v{best_version}: -{drop:.4f} (allowed {allowed:g})"
            facts.append((metric, what))
    if not facts:
        return []
    title = f"Regression: {task} champion v{number}"
    return [Incident(f"regression:{task}:v{number}", "regression", title, facts)]


def live_incidents(
    task: str, drift: dict[str, Any], version: str, th: dict[str, float]
) -> tuple[list[Incident], list[str]]:
    """Drift and collapse incidents, and the keys of those whose condition is clear now."""
    drift_key, collapse_key = f"drift:{task}:v{version}", f"collapse:{task}:v{version}"
    if drift["live_tweets"] < th["min_volume"]:
        log.info("only %d inspected tweets in the window: no live-data verdict", drift["live_tweets"])
        return [], []
    incidents, clear = [], []
    distance = drift.get("centroid_distance")
    window = f"{drift['window']['since'][:16]} to {drift['window']['until'][:16]}"
    if distance is not None and distance > th["drift_distance"]:
        facts = [
            ("Centroid cosine distance", f"{distance:.4f} (threshold {th['drift_distance']:g})"),
            ("Window", window),
            ("Tweets", str(drift["live_tweets"])),
            ("Training examples", str(drift["reference_embedded"])),
        ]
        title = f"Data drift: {task} live tweets moved away from the training data"
        incidents.append(Incident(drift_key, "drift", title, facts))
    elif distance is not None:
        clear.append(drift_key)
    share = drift.get("dominant_share") or 0.0
    if share >= th["collapse_share"]:
        limit = emails.pct(th["collapse_share"])
        facts = [
            ("Dominant class", f"{drift['dominant_label']} {emails.pct(share)} (threshold {limit})"),
            ("Live shares", _shares(drift["live_shares"])),
            ("Training shares", _shares(drift["reference_shares"])),
            ("Window", window),
        ]
        title = f"Prediction collapse: {task} predicts one class"
        incidents.append(Incident(collapse_key, "collapse", title, facts))
    else:
        clear.append(collapse_key)
    return incidents, clear


def _shares(shares: dict[str, float]) -> str:
    return ", ".join(f"{k} {emails.pct(v)}" for k, v in shares.items())


def incident_alert(incident: dict[str, Any], summary: dict | None) -> Alert:
    sections = [emails.summary_section(summary, "What people said (last days)")] if summary else []
    html = emails.page(incident["title"], facts=incident["facts"], sections=sections)
    text = "; ".join(f"{k}: {v}" for k, v in incident["facts"])
    return Alert(
        key=incident["key"],
        kind=incident["kind"],
        subject=f"[tweetpulse] {incident['title']}",
        html=html,
        summary=f"{incident['title']}: {text}"[:500],
    )
