"""SQL over ``served_predictions``: the recorder's writes and the reads the live-data checks make.

Writes are one ``COPY`` per flush; reads aggregate in SQL over the ``(task, served_at)`` index.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import NamedTuple

from model_runner.db import Database


class ServedRow(NamedTuple):
    """One sampled answer, in the column order of ``COPY``."""

    task: str
    text_hash: bytes
    text: str | None
    model_name: str
    model_version: str
    label: str
    confidence: float
    served_at: datetime
    replica: str | None


COLUMNS = ServedRow._fields


def insert_rows(db: Database, rows: list[ServedRow]) -> int:
    """All rows in one ``COPY`` (one transaction): all are stored or none."""
    if not rows:
        return 0
    sql = f"COPY served_predictions ({', '.join(COLUMNS)}) FROM STDIN"
    with db.connect() as conn, conn.cursor() as cur, cur.copy(sql) as copy:
        for r in rows:
            copy.write_row(r)
    return len(rows)


def delete_expired(db: Database, retention_days: float) -> int:
    """Delete rows served more than ``retention_days`` ago; returns how many."""
    with db.connect() as conn:
        cur = conn.execute(
            "DELETE FROM served_predictions WHERE served_at < now() - make_interval(secs => %s)",
            (float(retention_days) * 86400.0,),
        )
        return cur.rowcount


@dataclass
class ServedWindow:
    """Served predictions of one task in a time window: volume, per-label counts, mean confidence."""

    volume: int
    counts: dict[str, int]
    mean_confidence: float | None
    model_versions: list[str]


def window_counts(db: Database, task: str, since: datetime, until: datetime) -> ServedWindow:
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT label, count(*), sum(confidence), array_agg(DISTINCT model_version)"
            " FROM served_predictions WHERE task = %s AND served_at >= %s AND served_at < %s GROUP BY 1",
            (task, since, until),
        ).fetchall()
    volume = sum(n for _, n, _, _ in rows)
    conf = sum(float(c) for _, _, c, _ in rows)
    versions = sorted({v for *_, vs in rows for v in vs})
    return ServedWindow(
        volume=volume,
        counts={label: n for label, n, _, _ in sorted(rows)},
        mean_confidence=round(conf / volume, 6) if volume else None,
        model_versions=versions,
    )


def daily_counts(db: Database, task: str, since: datetime, until: datetime) -> dict[date, ServedWindow]:
    """Per UTC day of ``served_at``: what ``window_counts`` gives for that day."""
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT (served_at AT TIME ZONE 'UTC')::date AS day, label, count(*), sum(confidence),"
            " array_agg(DISTINCT model_version)"
            " FROM served_predictions WHERE task = %s AND served_at >= %s AND served_at < %s"
            " GROUP BY 1, 2 ORDER BY 1, 2",
            (task, since, until),
        ).fetchall()
    days: dict[date, list] = {}
    for day, label, n, conf, versions in rows:
        days.setdefault(day, []).append((label, n, float(conf), versions))
    out = {}
    for day, items in days.items():
        volume = sum(n for _, n, _, _ in items)
        out[day] = ServedWindow(
            volume=volume,
            counts={label: n for label, n, _, _ in items},
            mean_confidence=round(sum(c for _, _, c, _ in items) / volume, 6),
            model_versions=sorted({v for *_, vs in items for v in vs}),
        )
    return out
