"""uvicorn with a graceful drain: on SIGTERM readiness turns 503, the listener closes, in-flight
requests get ``shutdown_grace_s`` to finish, then the lifespan stops the batchers and the training
worker (SIGTERM, then SIGKILL).

Each response leaves in one write: uvicorn writes the status line and headers, then the body, in two
syscalls, and a replica SIGKILLed between them (a busy process can be descheduled there) leaves its
balancer with headers it has already forwarded and cannot replay. Held together, a replica either
answered or did not, and the balancer replays what it did not answer.
"""

from __future__ import annotations

import asyncio

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from model_runner.settings import Settings

_HEAD_END = b"\r\n\r\n"


class _OneWriteTransport:
    """A transport that holds a write carrying only a response head until the next write (the body,
    in the same loop iteration) and sends both at once; a head with nothing after it (a 204, a
    streamed response's first pause) goes out on the next iteration of the loop."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data) -> None:
        data = bytes(data)
        if self._held is not None:
            data, self._held = self._held + data, None
        if (
            data.startswith(b"HTTP/1.1 ")
            and data.endswith(b"\r\n\r\n")
            and not data.startswith(b"HTTP/1.1 1")
        ):
            self._held = data
            self._loop.call_soon(self.flush)
            return
        self._transport.write(data)

    def flush(self) -> None:
        if self._held is not None:
            data, self._held = self._held, None
            if not self._transport.is_closing():
                self._transport.write(data)

    def writelines(self, lines) -> None:
        self.write(b"".join(lines))

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name):
        return getattr(self._transport, name)


class OneWriteHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol whose responses leave in one write (see the module's docstring)."""

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(_OneWriteTransport(transport, self.loop))


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI):
        super().__init__(config)
        self._state = app.state.runner

    def handle_exit(self, sig, frame) -> None:
        self._state.begin_drain()
        super().handle_exit(sig, frame)


def server_for(app: FastAPI, settings: Settings, *, host: str, port: int, **config) -> DrainingServer:
    config.setdefault("log_level", "info")
    config.setdefault("access_log", False)
    config.setdefault("http", OneWriteHttpProtocol)
    uv_config = uvicorn.Config(
        app, host=host, port=port, timeout_graceful_shutdown=int(settings.shutdown_grace_s) or None, **config
    )
    return DrainingServer(uv_config, app)


def run(app: FastAPI, settings: Settings, *, host: str, port: int) -> None:
    server_for(app, settings, host=host, port=port).run()
