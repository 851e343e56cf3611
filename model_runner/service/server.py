"""uvicorn with a graceful drain: on SIGTERM readiness turns 503, the listener closes, in-flight
requests get ``shutdown_grace_s`` to finish, then the lifespan stops the batchers and the training
worker (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from model_runner.settings import Settings


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
    uv_config = uvicorn.Config(
        app, host=host, port=port, timeout_graceful_shutdown=int(settings.shutdown_grace_s) or None, **config
    )
    return DrainingServer(uv_config, app)


def run(app: FastAPI, settings: Settings, *, host: str, port: int) -> None:
    server_for(app, settings, host=host, port=port).run()
