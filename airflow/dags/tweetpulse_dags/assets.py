"""The Asset a promotion updates: ``weekly_retrain`` emits an event on it when a job promoted a new
champion (extra ``{"task", "version", "job_id"}``), and ``regression_check`` is scheduled on it as
well as daily, so a new champion is checked at once."""

from __future__ import annotations

from airflow.sdk import Asset

CHAMPION = Asset(name="tweetpulse_champion", uri="tweetpulse://model-runner/champion")
