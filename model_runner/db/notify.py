"""Postgres LISTEN/NOTIFY between the processes of one deployment.

Two channels: ``tweetpulse_jobs`` (a job was queued: ``train`` processes look for it now instead of
at their next poll) and ``tweetpulse_champion`` (a training job ended: serving replicas reload the
task now instead of at their next registry poll). A notification is a hint, never the truth: it is
lost while a listener is disconnected, so every listener also polls (``job_claim_poll_s``,
``reload_poll_s``), and on reconnecting it runs its handler once for whatever it may have missed.
The worker notifies the champion channel right after the alias moved; the process that ran the job
again when the job ended (whatever happened in between).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import psycopg

from model_runner.db.database import Database

log = logging.getLogger(__name__)

JOBS_CHANNEL = "tweetpulse_jobs"  # payload: a job id that waits for a train process
CHAMPION_CHANNEL = "tweetpulse_champion"  # payload: the task whose champion moved (or whose job ended)
CHANNELS = (JOBS_CHANNEL, CHAMPION_CHANNEL)

Handler = Callable[[str | None], Awaitable[None]]  # payload; None = "after a reconnect: catch up"


def notify(db: Database, channel: str, payload: str) -> None:
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    with db.connect() as conn:
        conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))


class Listener:
    """One dedicated connection that LISTENs on ``handlers``' channels and calls each handler with
    the payload; reconnects with backoff (capped at ``retry_max_s``) whenever the database goes away."""

    def __init__(self, db: Database, handlers: dict[str, Handler], *, retry_max_s: float = 30.0):
        unknown = set(handlers) - set(CHANNELS)
        if unknown:
            raise ValueError(f"unknown channels {sorted(unknown)}")
        self.db = db
        self.handlers = handlers
        self.retry_max_s = retry_max_s
        self.connected = asyncio.Event()

    async def run(self) -> None:
        delay, failures = 0.5, 0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.db.url, autocommit=True, connect_timeout=max(1, round(self.db.connect_timeout_s))
                ) as conn:
                    for channel in self.handlers:
                        # channel names are the module's constants, never input
                        await conn.execute(f"LISTEN {channel}")
                    self.connected.set()
                    if failures:
                        log.warning("LISTEN connection is back after %d failure(s)", failures)
                        for handler in self.handlers.values():
                            await self._call(handler, None)
                    delay, failures = 0.5, 0
                    async for note in conn.notifies():
                        handler = self.handlers.get(note.channel)
                        if handler is not None:
                            await self._call(handler, note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database went away: listen again when it is back
                self.connected.clear()
                failures += 1
                if failures == 1 or failures % 10 == 0:
                    log.warning("LISTEN connection lost (%s); reconnecting", type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)

    @staticmethod
    async def _call(handler: Handler, payload: str | None) -> None:
        try:
            await handler(payload)
        except asyncio.CancelledError:
            raise
        except Exception:  # one bad notification never ends the listening
            log.exception("handling a notification failed")
