"""The cursor of each watched target, in Airflow Variables (visible and resettable in the UI).

Two Variables per target, so mapped inspector tasks never overwrite each other's state:

* ``tweetpulse_since_id__<target>``: the last fully fetched point. Every tweet at or below it is
  stored; it never moves past a tweet that was not fetched.
* ``tweetpulse_backfill__<target>`` (JSON, only while a backlog exists): the unfetched window
  ``(since_id, until_id)`` left by a run that hit its per-run bound while newer tweets were stored
  up to ``head_id``, and the backlog's bookkeeping (runs it lasted, tweets fetched meanwhile).

The inspector writes them only after the ModelRunner committed the tweets and predictions they
cover, ``since_id`` first: it only moves over ranges fetched in full, so a crash before the backfill
is written leaves a window at or below ``since_id`` that the next run drops as stale (the tweets above
are fetched again and upserted once), never a cursor that skips a tweet.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

from tweetpulse_dags.config import BACKFILL_PREFIX, SINCE_ID_PREFIX
from tweetpulse_dags.sources.base import Target

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backfill:
    """What a bounded run left to later runs, and how long the target has been behind."""

    until_id: int | None = None  # unfetched window (since_id, until_id); None: no window open
    head_id: int | None = None  # newest stored tweet while the window is open
    runs: int = 0  # consecutive runs that ended with tweets left to fetch
    started: str | None = None  # run time (ISO) of the first of those runs
    episode: str = ""  # since_id when the backlog began: the alert key, one e-mail per backlog
    fetched: int = 0  # tweets fetched by those runs
    last_run: str | None = None  # the run that counted last: a rerun of it does not count again

    @property
    def window_open(self) -> bool:
        return self.until_id is not None

    def closed(self) -> Backfill:
        return replace(self, until_id=None, head_id=None)

    def to_json(self) -> str:
        raw: dict[str, Any] = asdict(self)
        for key in ("until_id", "head_id"):  # ids as strings: JSON readers in the UI lose 64-bit ints
            raw[key] = None if raw[key] is None else str(raw[key])
        return json.dumps(raw)

    @classmethod
    def from_json(cls, raw: str) -> Backfill:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        for key in ("until_id", "head_id"):
            known[key] = None if known.get(key) in (None, "") else int(known[key])
        return cls(**known)


class CursorStore(Protocol):
    def get(self, target: Target) -> int | None: ...

    def set(self, target: Target, since_id: int) -> None: ...


class BackfillStore(CursorStore, Protocol):
    """A cursor store that also keeps the backfill window (the inspector works without one too, for
    sources that keep the oldest tweets of a bounded run and so never leave a window)."""

    def get_backfill(self, target: Target) -> Backfill | None: ...

    def set_backfill(self, target: Target, backfill: Backfill | None) -> None: ...


def variable_key(target: Target) -> str:
    return SINCE_ID_PREFIX + target.slug


def backfill_key(target: Target) -> str:
    return BACKFILL_PREFIX + target.slug


class VariableCursors:
    def get(self, target: Target) -> int | None:
        from airflow.sdk import Variable

        raw = Variable.get(variable_key(target), default=None)
        if raw in (None, ""):
            return None
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"Variable {variable_key(target)} holds {raw!r}, not a tweet id") from None

    def set(self, target: Target, since_id: int) -> None:
        from airflow.sdk import Variable

        about = f"every tweet of {target.key} up to this id is stored"
        Variable.set(variable_key(target), str(since_id), description=about)
        log.info("since_id of %s advanced to %d", target.key, since_id)

    def get_backfill(self, target: Target) -> Backfill | None:
        from airflow.sdk import Variable

        raw = Variable.get(backfill_key(target), default=None)
        if raw in (None, "", "{}", "null"):
            return None
        try:
            return Backfill.from_json(raw)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"Variable {backfill_key(target)} is not a backfill cursor: {exc}") from None

    def set_backfill(self, target: Target, backfill: Backfill | None) -> None:
        from airflow.sdk import Variable

        if backfill is None:
            Variable.delete(backfill_key(target))
            log.info("%s: no tweets left to later runs", target.key)
            return
        about = f"tweets of {target.key} left to later runs (deleted when none are)"
        Variable.set(backfill_key(target), backfill.to_json(), description=about)
        if backfill.window_open:
            log.info(
                "%s: backfill window below %d pending (run %d of this backlog)",
                target.key,
                backfill.until_id,
                backfill.runs,
            )
