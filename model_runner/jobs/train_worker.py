"""One training job in its own process: ``python -m model_runner.jobs.train_worker JOB_ID``.

The service starts it with the settings as JSON on stdin (secrets never travel in argv or the
environment listing) and watches the job row. The worker writes stage and progress, honours a
cancel request at each checkpoint, and after a promotion pushes the model to the Hub. The service,
not the worker, hot-reloads the new champion once the row says ``succeeded``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
import traceback
from datetime import UTC, datetime

from pydantic import SecretStr

from model_runner.jobs.training_jobs import JobStore
from model_runner.settings import Settings

log = logging.getLogger("model_runner.train_worker")


def dump_settings(settings: Settings) -> str:
    data = settings.model_dump(mode="python")
    for key, value in data.items():
        raw = getattr(settings, key)
        data[key] = raw.get_secret_value() if isinstance(raw, SecretStr) else value
    return json.dumps(data, default=str)


def load_settings(text: str) -> Settings:
    return Settings(**json.loads(text))


class _Reporter:
    """Progress to the job row, at most once a second unless the stage changes."""

    def __init__(self, store: JobStore, job_id: str):
        self.store, self.job_id = store, job_id
        self._last = (None, 0.0)
        self._checked = 0.0
        self._cancel = False

    def progress(self, stage: str, value: float) -> None:
        now = time.monotonic()
        if stage != self._last[0] or now - self._last[1] >= 1.0:
            self.store.update(self.job_id, stage=stage, progress=min(max(value, 0.0), 1.0))
            self._last = (stage, now)

    def should_stop(self) -> bool:
        now = time.monotonic()
        if not self._cancel and now - self._checked >= 1.0:
            self._checked = now
            self._cancel = self.store.cancel_requested(self.job_id)
        return self._cancel


def feedback_rows(components, task: str) -> list[dict]:
    """Labelled feedback (review queue answers) joins every retrain of its task."""
    with components.db.connect() as conn:
        rows = conn.execute(
            "SELECT text, label FROM labelled_examples WHERE task = %s AND source = 'feedback' ORDER BY id",
            (task,),
        ).fetchall()
    return [{"text": text, "label": label} for text, label in rows]


def run_job(settings: Settings, job_id: str) -> int:
    from model_runner.jobs.publish import publish_to_hub
    from model_runner.tasks import get_task
    from model_runner.training.run import run_training
    from model_runner.wiring import Components

    components = Components(settings)
    store = JobStore(components.db)
    job = store.get(job_id)
    if job is None or job.state != "queued":
        log.error("job %s is not queued (%s); nothing to do", job_id, job.state if job else "missing")
        return 1
    store.update(
        job_id,
        state="running",
        stage="starting",
        started_at=datetime.now(UTC),
        worker_pid=os.getpid(),
        worker_host=socket.gethostname(),
    )
    reporter = _Reporter(store, job_id)
    params = job.params
    try:
        task = get_task(job.task, settings)
        extra = feedback_rows(components, task.name) if params.get("include_feedback", True) else []
        outcome = run_training(
            components,
            task,
            data=params.get("dataset"),
            adapters=params.get("adapters"),
            folds=params.get("folds"),
            sample_fraction=params.get("sample_fraction"),
            extra_rows=extra,
            progress=reporter.progress,
            should_stop=reporter.should_stop,
        )
    except InterruptedError:
        store.update(
            job_id,
            state="cancelled",
            stage="cancelled",
            error="cancelled on request",
            finished_at=datetime.now(UTC),
        )
        return 0
    except Exception as exc:
        log.error("job %s failed:\n%s", job_id, traceback.format_exc())
        store.update(
            job_id, state="failed", error=f"{type(exc).__name__}: {exc}"[:2000], finished_at=datetime.now(UTC)
        )
        return 1

    import mlflow

    experiment_id = mlflow.MlflowClient(settings.tracking_uri()).get_run(outcome.run_id).info.experiment_id
    result = {
        "experiment_id": experiment_id,
        "promoted": outcome.promoted,
        "gate": outcome.gate,
        "mlflow_run_id": outcome.run_id,
        "best_candidate": outcome.best_candidate,
        "cv": outcome.cv,
        "quantization": outcome.quantization,
        "feedback_rows": len(extra),
        "stage_seconds": outcome.stage_seconds,
    }
    store.update(job_id, stage="publish", progress=1.0, result=result)
    # a push failure is reported in the job but never undoes the promotion
    result["hub"] = (
        publish_to_hub(settings, outcome) if outcome.promoted else {"pushed": False, "reason": "not promoted"}
    )
    store.update(
        job_id,
        state="succeeded",
        stage="done",
        progress=1.0,
        metrics=outcome.summary(),
        model_version=outcome.model_version,
        result=result,
        finished_at=datetime.now(UTC),
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if len(argv) != 1:
        print(
            "usage: python -m model_runner.jobs.train_worker JOB_ID  (settings JSON on stdin)",
            file=sys.stderr,
        )
        return 2
    settings = load_settings(sys.stdin.read())
    if settings.train_worker_nice:
        os.nice(settings.train_worker_nice)  # inherited by the CV pool's processes
    log.info("training worker for job %s, pid %d, niceness %d", argv[0], os.getpid(), os.nice(0))
    return run_job(settings, argv[0])


if __name__ == "__main__":
    sys.exit(main())
