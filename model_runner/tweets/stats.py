"""Daily inspection statistics per task, watched source and UTC day, computed in SQL and upserted.

Recomputing a day that did not change writes nothing, so re-running the inspector logs nothing twice
to MLflow (see ``stats_mlflow.py``). Served traffic (sampled ``/inference`` answers) gets the same
daily statistics with ``found_by = "served"`` from ``served_daily_stats``: computed on read, neither
stored nor logged (the inspector's alerts and MLflow runs stay about inspected tweets).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from psycopg.types.json import Jsonb

from model_runner.db import Database
from model_runner.monitoring.store import daily_counts
from model_runner.tweets.window import LATEST_PREDICTION, TOP_SCORE, TWEET_TIME


@dataclass
class DailyStat:
    task: str
    found_by: str
    day: date
    volume: int
    counts: dict[str, int]
    shares: dict[str, float]
    mean_confidence: float | None
    model_versions: list[str] = field(default_factory=list)
    changed: bool = False
    mlflow_run_id: str | None = None

    @property
    def key(self) -> str:
        return f"{self.task}/{self.found_by}/{self.day.isoformat()}"

    def to_dict(self) -> dict:
        out = asdict(self)
        out["day"] = self.day.isoformat()
        return out


_DAILY_SQL = f"""
SELECT found_by, day, label, n,
       n::float8 / sum(n) OVER w AS share,
       sum(conf) OVER w / sum(n) OVER w AS mean_confidence,
       versions
FROM (
    SELECT s.found_by, ({TWEET_TIME} AT TIME ZONE 'UTC')::date AS day, l.label,
           count(*) AS n, sum({TOP_SCORE}) AS conf, array_agg(DISTINCT l.model_version) AS versions
    FROM tweets t
    JOIN tweet_sources s ON s.tweet_id = t.tweet_id
    {LATEST_PREDICTION}
    WHERE {TWEET_TIME} >= %(since)s AND {TWEET_TIME} < %(until)s
      AND (%(found_by)s::text IS NULL OR s.found_by = %(found_by)s)
    GROUP BY 1, 2, 3
) per_label
WINDOW w AS (PARTITION BY found_by, day)
ORDER BY found_by, day, label
"""


def _labels(conn, task: str) -> list[str]:
    # the label set of the newest prediction: classes with no tweet that day still get a 0 share
    row = conn.execute(
        "SELECT scores FROM predictions WHERE task = %s ORDER BY predicted_at DESC LIMIT 1", (task,)
    ).fetchone()
    return sorted(row[0]) if row else []


def compute_daily_stats(
    db: Database, task: str, first_day: date, last_day: date, *, found_by: str | None = None
) -> list[DailyStat]:
    """Statistics of every (source, day) with at least one predicted tweet, days inclusive."""
    since = datetime.combine(first_day, time.min, UTC)
    until = datetime.combine(last_day + timedelta(days=1), time.min, UTC)
    with db.connect() as conn:
        labels = _labels(conn, task)
        rows = conn.execute(
            _DAILY_SQL,
            {"task": task, "since": since, "until": until, "found_by": found_by},
        ).fetchall()
    grouped: dict[tuple[str, date], DailyStat] = {}
    versions: dict[tuple[str, date], set[str]] = defaultdict(set)
    for source, day, label, n, share, mean_conf, vers in rows:
        stat = grouped.get((source, day))
        if stat is None:
            stat = DailyStat(task, source, day, 0, dict.fromkeys(labels, 0), dict.fromkeys(labels, 0.0), None)
            grouped[(source, day)] = stat
        stat.volume += n
        stat.counts[label] = n
        stat.shares[label] = round(share, 6)
        stat.mean_confidence = round(mean_conf, 6) if mean_conf is not None else None
        versions[(source, day)].update(vers)
    for k, stat in grouped.items():
        stat.model_versions = sorted(versions[k])
    return list(grouped.values())


SERVED = "served"  # the found_by of served traffic's daily statistics


def served_daily_stats(db: Database, task: str, first_day: date, last_day: date) -> list[DailyStat]:
    """Statistics of every UTC day (of ``served_at``) with sampled answers of the task, days inclusive."""
    since = datetime.combine(first_day, time.min, UTC)
    until = datetime.combine(last_day + timedelta(days=1), time.min, UTC)
    with db.connect() as conn:
        labels = _labels(conn, task)
    out = []
    for day, found in sorted(daily_counts(db, task, since, until).items()):
        counts = dict.fromkeys(labels, 0) | found.counts
        shares = {label: round(n / found.volume, 6) for label, n in counts.items()}
        out.append(
            DailyStat(
                task, SERVED, day, found.volume, counts, shares, found.mean_confidence, found.model_versions
            )
        )
    return out


def store_daily_stats(db: Database, stats: list[DailyStat]) -> list[DailyStat]:
    """Upsert; marks each stat ``changed`` when its row is new or different, and reads its MLflow run."""
    with db.connect() as conn:
        for stat in stats:
            row = conn.execute(
                "INSERT INTO inspection_daily_stats AS s"
                " (task, found_by, day, volume, counts, shares, mean_confidence, model_versions)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (task, found_by, day) DO UPDATE SET volume = EXCLUDED.volume,"
                "  counts = EXCLUDED.counts, shares = EXCLUDED.shares,"
                "  mean_confidence = EXCLUDED.mean_confidence, model_versions = EXCLUDED.model_versions,"
                "  computed_at = now()"
                " WHERE (s.volume, s.counts, s.shares, s.mean_confidence, s.model_versions) IS DISTINCT FROM"
                "  (EXCLUDED.volume, EXCLUDED.counts, EXCLUDED.shares, EXCLUDED.mean_confidence,"
                "   EXCLUDED.model_versions)"
                " RETURNING mlflow_run_id",
                (
                    stat.task,
                    stat.found_by,
                    stat.day,
                    stat.volume,
                    Jsonb(stat.counts),
                    Jsonb(stat.shares),
                    stat.mean_confidence,
                    stat.model_versions,
                ),
            ).fetchone()
            stat.changed = row is not None
            if row is None:
                (stat.mlflow_run_id,) = conn.execute(
                    "SELECT mlflow_run_id FROM inspection_daily_stats"
                    " WHERE task = %s AND found_by = %s AND day = %s",
                    (stat.task, stat.found_by, stat.day),
                ).fetchone()
            else:
                stat.mlflow_run_id = row[0]
    return stats


def set_mlflow_run(db: Database, stat: DailyStat, run_id: str) -> None:
    with db.connect() as conn:
        conn.execute(
            "UPDATE inspection_daily_stats SET mlflow_run_id = %s"
            " WHERE task = %s AND found_by = %s AND day = %s",
            (run_id, stat.task, stat.found_by, stat.day),
        )
    stat.mlflow_run_id = run_id


def read_daily_stats(
    db: Database, task: str, first_day: date, last_day: date, *, found_by: str | None = None
) -> list[DailyStat]:
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT task, found_by, day, volume, counts, shares, mean_confidence, model_versions,"
            " false, mlflow_run_id FROM inspection_daily_stats"
            " WHERE task = %s AND day BETWEEN %s AND %s AND (%s::text IS NULL OR found_by = %s)"
            " ORDER BY found_by, day",
            (task, first_day, last_day, found_by, found_by),
        ).fetchall()
    return [DailyStat(*row) for row in rows]
