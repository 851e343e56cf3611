"""FastAPI dependencies: how a route reaches the service's parts (all built in ``create_app``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request

if TYPE_CHECKING:
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
