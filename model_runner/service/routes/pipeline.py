"""Routes the Airflow DAGs use for tweets, predictions, statistics, drift and the review queue."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["pipeline"])
