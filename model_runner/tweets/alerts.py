"""The alert ledger: exactly one e-mail per incident, whoever retries.

Protocol for a sender (an Airflow task): ``claim(key)``; if the claim is granted, send, then
``confirm``; if sending failed, ``release`` so a retry may claim again. A claim is atomic (one
``INSERT .. ON CONFLICT DO UPDATE``), so two concurrent senders never both get it. A holder that died
between claim and confirm leaves a ``pending`` row that becomes claimable after its lease: at worst a
crash in that window repeats one e-mail, it never loses one. ``resolve`` closes an incident when its
condition clears, so the next occurrence alerts again.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import dict_row

from model_runner.db import Database

KEY_PATTERN = re.compile(r"^[\w.:@/+=-]{1,200}$")


class InvalidAlertKey(ValueError):
    pass


@dataclass(frozen=True)
class Claim:
    key: str
    granted: bool
    state: str
    token: str | None  # only when granted
    occurrences: int
    sent_at: datetime | None


def check_key(key: str) -> str:
    if not KEY_PATTERN.match(key):
        raise InvalidAlertKey(f"alert key {key!r} must be 1-200 characters of letters, digits and ._:@/+=-")
    return key


def claim(db: Database, key: str, kind: str, summary: str | None = None, *, lease_s: float = 120) -> Claim:
    check_key(key)
    token = uuid.uuid4()
    claimable = (
        "(a.state IN ('released', 'resolved')"
        " OR (a.state = 'pending' AND a.claimed_at < now() - make_interval(secs => %(lease)s)))"
    )
    with db.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "INSERT INTO alerts AS a (key, kind, state, summary, claim_token, claimed_at)"
            " VALUES (%(key)s, %(kind)s, 'pending', %(summary)s, %(token)s, now())"
            " ON CONFLICT (key) DO UPDATE SET occurrences = a.occurrences + 1,"
            f"  summary = CASE WHEN {claimable} THEN EXCLUDED.summary ELSE a.summary END,"
            f"  claimed_at = CASE WHEN {claimable} THEN now() ELSE a.claimed_at END,"
            f"  claim_token = CASE WHEN {claimable} THEN EXCLUDED.claim_token ELSE a.claim_token END,"
            f"  state = CASE WHEN {claimable} THEN 'pending' ELSE a.state END"
            " RETURNING state, claim_token, occurrences, sent_at",
            {"key": key, "kind": kind, "summary": summary, "token": token, "lease": float(lease_s)},
        ).fetchone()
    granted = row["claim_token"] == token
    return Claim(
        key=key,
        granted=granted,
        state=row["state"],
        token=str(token) if granted else None,
        occurrences=row["occurrences"],
        sent_at=row["sent_at"],
    )


def _finish(db: Database, key: str, token: str, sql_set: str) -> bool:
    check_key(key)
    try:
        token_uuid = uuid.UUID(token)
    except ValueError:
        return False
    with db.connect() as conn:
        cur = conn.execute(
            f"UPDATE alerts SET {sql_set} WHERE key = %s AND claim_token = %s AND state = 'pending'",
            (key, token_uuid),
        )
        return cur.rowcount == 1


def confirm(db: Database, key: str, token: str) -> bool:
    """The e-mail went out; False when the token no longer holds the claim."""
    return _finish(db, key, token, "state = 'sent', sent_at = now()")


def release(db: Database, key: str, token: str) -> bool:
    """Sending failed: let the next attempt claim again at once."""
    return _finish(db, key, token, "state = 'released', claim_token = NULL")


def resolve(db: Database, keys: list[str]) -> int:
    """The condition cleared: close these incidents so a recurrence alerts again."""
    for key in keys:
        check_key(key)
    with db.connect() as conn:
        cur = conn.execute(
            "UPDATE alerts SET state = 'resolved', resolved_at = now(), claim_token = NULL"
            " WHERE key = ANY(%s) AND state IN ('sent', 'released')",
            (keys,),
        )
        return cur.rowcount


def recent(db: Database, *, kind: str | None = None, limit: int = 50) -> list[dict]:
    with db.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT key, kind, state, summary, occurrences, first_seen_at, claimed_at, sent_at, resolved_at"
            " FROM alerts WHERE (%s::text IS NULL OR kind = %s) ORDER BY first_seen_at DESC LIMIT %s",
            (kind, kind, limit),
        ).fetchall()
    return rows
