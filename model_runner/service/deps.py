"""FastAPI dependencies: how a route reaches the service's parts (all built in ``create_app``).

Routes take the typed aliases (``state: StateDep``), never ``Depends(...)`` by hand.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

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
