"""The one wiring point of the HTTP service: ``create_app(settings)``.

Nothing heavy happens at import or in ``create_app``: the lifespan opens the port at once, then
migrates the database, recovers interrupted jobs and loads every task's champion in the background
(``/health/ready`` says when that is done).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from model_runner import __version__
from model_runner.service.auth import DocsGuard, authorize
from model_runner.service.docs_assets import install_docs
from model_runner.service.errors import install_error_handlers
from model_runner.service.limits import BodySizeLimit
from model_runner.service.metrics import MetricsMiddleware
from model_runner.service.openapi_docs import install_openapi
from model_runner.service.routes import health, inference, metrics, model, similar, train, tweets
from model_runner.service.state import ServiceState
from model_runner.settings import Settings, get_settings

log = logging.getLogger(__name__)

ROUTERS = (
    health.router,
    inference.router,
    similar.router,
    model.router,
    train.router,
    tweets.router,
    metrics.router,
)

DESCRIPTION = """
The ModelRunner of tweetpulse: trains tweet classifiers on a frozen transformer, keeps every run
and model in MLflow, and serves the champion of each task.

* `POST /inference` classifies up to `max_messages` texts per request (micro-batched across requests).
* `POST /train` starts a training job (bearer token); `GET /train/{job_id}` follows it.
* `POST /model/reload` (bearer token) swaps in the current champion after validating it.

Errors are always `{"error": {"type", "message"}}` (the `ErrorBody` schema); each operation lists the
ones it can give. **Authorize** takes the admin token (`adminToken`), the read token (`readToken`), or both;
each operation shows which one it needs.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    state = ServiceState(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(
        title="tweetpulse ModelRunner",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # one rule for every route: public allow-list, read token for reads, admin token for writes
        dependencies=[Depends(authorize)],
        # served by install_docs with packaged assets: FastAPI's default pages load them from CDNs
        docs_url=None,
        redoc_url=None,
    )
    app.state.runner = state
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    install_docs(app)
    install_openapi(app, settings)
    # outermost first: size limit before anything reads the body; metrics see every response
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(DocsGuard, state=state)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics, replica=state.replica)
    return app
