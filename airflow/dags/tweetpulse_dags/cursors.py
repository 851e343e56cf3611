"""``since_id`` per watched target, in Airflow Variables (visible and resettable in the UI).

One Variable per target, so mapped inspector tasks never overwrite each other's cursor. The
inspector sets it only after the ModelRunner committed the tweets and predictions it covers.
"""

from __future__ import annotations

import logging
from typing import Protocol

from tweetpulse_dags.config import SINCE_ID_PREFIX
from tweetpulse_dags.sources.base import Target

log = logging.getLogger(__name__)


class CursorStore(Protocol):
    def get(self, target: Target) -> int | None: ...

    def set(self, target: Target, since_id: int) -> None: ...


def variable_key(target: Target) -> str:
    return SINCE_ID_PREFIX + target.slug


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

        about = f"newest stored tweet id for {target.key}"
        Variable.set(variable_key(target), str(since_id), description=about)
        log.info("since_id of %s advanced to %d", target.key, since_id)
