"""Work for a client that went away is dropped: an await that also watches the connection."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

from model_runner.service.errors import ClientClosedRequest

T = TypeVar("T")


async def _disconnected(request: Request) -> None:
    # after the body is read, the server's receive() returns only when the client disconnects
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
        await asyncio.sleep(0.05)


async def until_disconnected(request: Request, work: Awaitable[T]) -> T:
    """The result of ``work``; if the client disconnects first, ``work`` is cancelled (which drops a
    queued inference from the batcher) and ``ClientClosedRequest`` is raised."""
    job = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({job, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not job.done():
            job.cancel()
            await asyncio.gather(job, return_exceptions=True)
        watch.cancel()
    if job.cancelled():
        raise ClientClosedRequest("the client closed the connection before the answer")
    return job.result()
