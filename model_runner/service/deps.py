"""FastAPI dependencies: how a route reaches the service's parts (all built in ``create_app``).

Routes take the typed aliases (``state: StateDep``), never ``Depends(...)`` by hand.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from model_runner.db import Database
from model_runner.service.state import ServiceState
from model_runner.settings import Settings
from model_runner.wiring import Components


def get_state(request: Request) -> ServiceState:
    return request.app.state.runner


def get_settings(request: Request) -> Settings:
    return request.app.state.runner.settings


def get_components(request: Request) -> Components:
    return request.app.state.runner.components


def get_db(request: Request) -> Database:
    return request.app.state.runner.components.db


StateDep = Annotated[ServiceState, Depends(get_state)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ComponentsDep = Annotated[Components, Depends(get_components)]
DbDep = Annotated[Database, Depends(get_db)]


def declared_task(settings: Settings, name: str) -> str:
    """``name`` if the tasks file declares it, else 422 unknown_task naming the declared ones."""
    from model_runner.tasks import get_task

    return get_task(name, settings).name


def get_task_query(
    request: Request,
    task: Annotated[
        str,
        Query(pattern=r"^[a-z][a-z0-9_]{0,39}$", description="A declared task (`GET /tasks` lists them)."),
    ] = "sentiment",
) -> str:
    return declared_task(get_settings(request), task)


TaskQuery = Annotated[str, Depends(get_task_query)]
