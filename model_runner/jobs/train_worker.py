"""One training job in its own process: ``python -m model_runner.jobs.train_worker JOB_ID [TOKEN]``.

The service starts it with the settings as JSON on stdin (secrets never travel in argv or the
environment listing) and watches the job row. The worker claims the job with its lease token, renews
the lease from a heartbeat thread every ``job_lease_s / 4`` seconds (a failed renewal is retried, a
brief database outage does not stop training), writes stage and progress, honours a cancel request
at each checkpoint, and after a promotion pushes the model to the Hub. Every write names the lease
token: once another process failed the job (its lease expired) the worker changes nothing, stops at
its next checkpoint and never moves the ``champion`` alias (the lease is renewed, atomically, right
before the alias moves). SIGTERM ends the job as failed, recording a promotion that already happened.
The service, not the worker, hot-reloads the new champion when the job ends.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from datetime import UTC, datetime

from pydantic import SecretStr

try:
    import psutil
except ImportError:  # pragma: no cover - psutil is a dependency; /proc is the fallback on Linux
    psutil = None

from model_runner.data import DataError
from model_runner.db.notify import CHAMPION_CHANNEL, notify
from model_runner.jobs.publish import publish_to_hub
from model_runner.settings import Settings
from model_runner.store.jobs import HubPush, JobResult, JobStore
from model_runner.tasks import get_task
from model_runner.training.progress_bar import PlainLines, PlainProgress
from model_runner.wiring import Components

log = logging.getLogger("model_runner.train_worker")

# a job's log gets a progress line on every stage change and at most this often between
PROGRESS_LOG_S = 30.0


def dump_settings(settings: Settings) -> str:
    data = settings.model_dump(mode="python")
    for key, value in data.items():
        raw = getattr(settings, key)
        data[key] = raw.get_secret_value() if isinstance(raw, SecretStr) else value
    return json.dumps(data, default=str)


def load_settings(text: str) -> Settings:
    return Settings(**json.loads(text))


# test-only fault injection (the fault tests): TWEETPULSE_TEST_FAULT_AFTER_PROMOTE=raise|sigterm|sigkill
# acts right after the champion alias moved; TWEETPULSE_TEST_PAUSE_AT_STAGE=STAGE:SECONDS sleeps once
# when a stage starts (a window with no database use of the worker's own)
_FAULT_AFTER_PROMOTE = "TWEETPULSE_TEST_FAULT_AFTER_PROMOTE"
_PAUSE_AT_STAGE = "TWEETPULSE_TEST_PAUSE_AT_STAGE"


class LeaseLost(RuntimeError):
    """The job no longer belongs to this worker (failed by another process, or taken over)."""


class Terminated(BaseException):
    """SIGTERM: a BaseException so that no ``except Exception`` in training code swallows it."""


def process_start_time(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds), or None when it is gone or a zombie.

    With the pid, it identifies a process: a pid reused by another process has another start time.
    """
    if psutil is not None:
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc.create_time()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] == "Z":
            return None
        with open("/proc/stat") as handle:
            boot = next(float(line.split()[1]) for line in handle if line.startswith("btime"))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


_DB_ERRORS: tuple[type[BaseException], ...]
try:
    import psycopg

    _DB_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError, OSError)
except ImportError:  # pragma: no cover
    _DB_ERRORS = (OSError,)


class Lease:
    """The worker's hold on its job row: claimed once, renewed by a daemon thread."""

    def __init__(self, store: JobStore, job_id: str, token: str, lease_s: float, retry_max_s: float = 30.0):
        self.store, self.job_id, self.token = store, job_id, token
        self.lease_s, self.retry_max_s = lease_s, retry_max_s
        self.lost = False
        self.last_renewed = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-heartbeat", daemon=True)

    def start(self) -> None:
        self.last_renewed = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        interval = self.lease_s / 4
        while not self._stop.wait(interval):
            try:
                if not self.store.heartbeat(self.job_id, self.token):
                    self.lost = True
                    log.error("job %s: lease lost (the job ended or was taken over); stopping", self.job_id)
                    return
                self.last_renewed = time.monotonic()
            except Exception as exc:  # a database outage: keep training, try again next beat
                log.warning(
                    "job %s: heartbeat failed (%s); retrying in %.0fs", self.job_id, _brief(exc), interval
                )

    def confirm(self) -> None:
        """Renew the lease now or raise ``LeaseLost``: called right before the champion alias moves.

        A successful renewal leaves a whole lease period in which no other process may fail the job.
        Database errors are retried for at most half a lease.
        """
        deadline = time.monotonic() + self.lease_s / 2
        delay = 0.5
        while True:
            if self.lost:
                raise LeaseLost(f"job {self.job_id} no longer holds its lease")
            try:
                if self.store.heartbeat(self.job_id, self.token):
                    self.last_renewed = time.monotonic()
                    return
                self.lost = True
                raise LeaseLost(f"job {self.job_id} no longer holds its lease")
            except _DB_ERRORS as exc:
                if time.monotonic() + delay > deadline:
                    raise LeaseLost(f"cannot confirm the lease of job {self.job_id}: {_brief(exc)}") from exc
                log.warning("job %s: lease check failed (%s); retrying", self.job_id, _brief(exc))
                time.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)


class _Reporter:
    """Progress to the job row (stage, progress and where in the stage: ``detail``), at most once a
    second unless the stage changes, and as plain lines to the job's log (``PROGRESS_LOG_S``).

    A failed write (database outage) is logged and skipped: progress is advisory.
    """

    def __init__(self, store: JobStore, job_id: str, lease: Lease):
        self.store, self.job_id, self.lease = store, job_id, lease
        self._last = (None, 0.0)
        self._checked = 0.0
        self._cancel = False
        self._pause = _pause_spec()
        self._lines = PlainProgress(lambda line: log.info("job %s: %s", job_id, line), PROGRESS_LOG_S)

    def progress(self, stage: str, value: float, detail: str | None = None) -> None:
        value = min(max(value, 0.0), 1.0)
        self._lines(stage, value, detail)
        now = time.monotonic()
        if stage != self._last[0] or now - self._last[1] >= 1.0:
            self._last = (stage, now)
            try:
                if not self.store.update(
                    self.job_id, token=self.lease.token, stage=stage, progress=value, detail=detail
                ):
                    self.lease.lost = True
            except _DB_ERRORS as exc:
                log.warning("job %s: progress not recorded (%s)", self.job_id, _brief(exc))
            if self._pause and self._pause[0] == stage:
                log.warning("job %s: test pause of %.1fs at stage %s", self.job_id, self._pause[1], stage)
                time.sleep(self._pause[1])
                self._pause = None

    def should_stop(self) -> bool:
        if self.lease.lost:
            return True
        now = time.monotonic()
        if not self._cancel and now - self._checked >= 1.0:
            self._checked = now
            try:
                self._cancel = self.store.cancel_requested(self.job_id)
            except _DB_ERRORS as exc:
                log.warning("job %s: cancel check failed (%s)", self.job_id, _brief(exc))
        return self._cancel


def _pause_spec() -> tuple[str, float] | None:
    raw = os.environ.get(_PAUSE_AT_STAGE, "")
    stage, _, seconds = raw.partition(":")
    try:
        return (stage, float(seconds)) if stage else None
    except ValueError:
        return None


def _brief(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:200]


_QUOTED = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\[[^\]]*\]|\{[^}]*\}|\([^)]*=[^)]*\)""")


def safe_error(exc: BaseException, dataset: str | None = None) -> str:
    """What a job records of an exception: its type and a message with no file contents or labels.

    Quoted values, lists, dicts and ``name=value`` groups (where readers and libraries put texts,
    labels and rows) are replaced by ``…``; data errors also name the dataset (as the caller gave it).
    """
    lines = str(exc).strip().splitlines()
    message = _QUOTED.sub("…", lines[0] if lines else "")[:300]
    text = f"{type(exc).__name__}: {message}".rstrip(": ")
    if isinstance(exc, DataError) and dataset:
        text += f" (dataset {os.path.basename(dataset.rstrip('/')) or dataset})"
    return text


def _retrying(fn, *args, deadline_s: float, retry_max_s: float, what: str, **kwargs):
    """Call a job-store write, retrying database errors until ``deadline_s`` has passed."""
    deadline = time.monotonic() + deadline_s
    delay = 0.5
    while True:
        try:
            return fn(*args, **kwargs)
        except _DB_ERRORS as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s failed (%s); retrying in %.1fs", what, _brief(exc), delay)
            time.sleep(delay)
            delay = min(delay * 2, retry_max_s)


def feedback_rows(components, task: str) -> list[dict]:
    """Labelled feedback (review queue answers) joins every retrain of its task."""
    return components.examples(task).feedback()


def _champion_version(components, task: str) -> str | None:
    champion = components.registry.champion(task)
    return str(champion.version) if champion else None


def _on_sigterm(signum, frame):
    raise Terminated("SIGTERM")


def run_job(settings: Settings, job_id: str, token: str | None = None) -> int:
    token = token or uuid.uuid4().hex
    components = Components(settings)
    store = components.jobs
    job = store.get(job_id)
    if job is None or job.state != "queued":
        log.error("job %s is not queued (%s); nothing to do", job_id, job.state if job else "missing")
        return 1
    pid = os.getpid()
    started = process_start_time(pid)
    if not store.claim(
        job_id,
        token,
        pid=pid,
        host=socket.gethostname(),
        started_at=datetime.fromtimestamp(started, UTC) if started else None,
    ):
        log.error("job %s was taken or ended before this worker could claim it; nothing to do", job_id)
        return 1
    lease = Lease(store, job_id, token, settings.job_lease_s, settings.job_db_retry_max_s)
    lease.start()
    try:
        return _run_claimed(settings, components, store, job, lease)
    finally:
        lease.stop()


def _run_claimed(settings: Settings, components, store: JobStore, job, lease: Lease) -> int:
    # lazy: the service imports this module at start-up; training loads sklearn, transformers, mlflow
    from model_runner.training.run import run_training

    job_id, token = job.id, lease.token
    reporter = _Reporter(store, job_id, lease)
    params = job.params
    promoted: dict = {}
    retry = {"deadline_s": settings.job_lease_s, "retry_max_s": settings.job_db_retry_max_s}

    def before_promote() -> None:
        lease.confirm()

    def on_promoted(version: str) -> None:
        promoted.update(promoted=True, model_version=str(version))
        fault = os.environ.get(_FAULT_AFTER_PROMOTE)
        if fault == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises Terminated at the next bytecode
        elif fault == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif fault == "raise":
            from mlflow.exceptions import MlflowException

            raise MlflowException("injected fault: the tracking server failed after the alias moved")
        try:
            store.merge_result(job_id, promoted, token=token)
            store.update(job_id, token=token, model_version=str(version))
            # serving replicas elsewhere swap to it now, not when this worker has ended
            notify(store.db, CHAMPION_CHANNEL, job.task)
        except _DB_ERRORS as exc:
            log.warning("job %s: promotion not yet recorded (%s)", job_id, _brief(exc))

    def end(state: str, error: str | None, extra: dict | None = None) -> None:
        """The worker's last write, guarded by its token; says whether the alias moved."""
        fields = {
            "state": state,
            "stage": state,
            "detail": None,
            "error": error,
            "finished_at": datetime.now(UTC),
        }
        if promoted.get("model_version"):
            fields["model_version"] = promoted["model_version"]
        try:
            if promoted or extra:
                _retrying(
                    store.merge_result,
                    job_id,
                    {**(extra or {}), **promoted},
                    token=token,
                    what="result",
                    **retry,
                )
            if not _retrying(store.update, job_id, token=token, what="job end", **retry, **fields):
                log.error(
                    "job %s: lease lost; the outcome (%s) is not recorded by this worker", job_id, state
                )
        except _DB_ERRORS as exc:
            log.error("job %s: could not record the outcome (%s); the service will", job_id, _brief(exc))

    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        try:
            champion_before = _champion_version(components, job.task)
            store.merge_result(job_id, {"champion_before": champion_before}, token=token)
        except Exception as exc:  # informational: the service compares champions after the job
            log.warning("job %s: champion before training unknown (%s)", job_id, _brief(exc))
        task = get_task(job.task, settings).with_data_options(
            label_map=params.get("label_map"),
            text_column=params.get("text_column"),
            label_column=params.get("label_column"),
        )
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
            before_promote=before_promote,
            on_promoted=on_promoted,
        )
    except Terminated:
        log.error("job %s: terminated (SIGTERM)", job_id)
        end("failed", "interrupted: the worker was terminated (SIGTERM)")
        return 143
    except LeaseLost as exc:
        log.error("job %s: %s; the champion alias was not moved", job_id, exc)
        return 3
    except InterruptedError:
        if lease.lost:
            log.error("job %s: lease lost; stopped without recording anything", job_id)
            return 3
        end("cancelled", "cancelled on request")
        return 0
    except Exception as exc:
        log.error("job %s failed:\n%s", job_id, traceback.format_exc())
        end("failed", safe_error(exc, params.get("dataset")))
        return 1

    try:  # the lease is still renewed during the Hub push
        return _finish(components, store, job_id, token, outcome, extra, publish_to_hub, retry)
    except Terminated:
        end("failed", "interrupted: the worker was terminated (SIGTERM)")
        return 143
    except Exception as exc:  # after the gate: the promotion (if any) stands and is recorded
        log.error("job %s failed after training:\n%s", job_id, traceback.format_exc())
        end("failed", safe_error(exc, params.get("dataset")))
        return 1


def _finish(components, store, job_id, token, outcome, extra, publish_to_hub, retry) -> int:
    result = JobResult(
        promoted=outcome.promoted,
        gate=outcome.gate,
        mlflow_run_id=outcome.run_id,
        best_candidate=outcome.best_candidate,
        cv=outcome.cv,
        quantization=outcome.quantization,
        feedback_rows=len(extra),
        stage_seconds=outcome.stage_seconds,
    )
    try:
        result.experiment_id = components.mlflow.get_run(outcome.run_id).info.experiment_id
    except Exception as exc:  # the link in the job view only
        log.warning("job %s: experiment id unknown (%s)", job_id, _brief(exc))
    _retrying(store.merge_result, job_id, result, token=token, what="result", **retry)
    _retrying(
        store.update, job_id, token=token, stage="publish", detail=None, progress=1.0, what="stage", **retry
    )
    # a push failure is reported in the job but never undoes the promotion (the service retries it)
    pushed = (
        publish_to_hub(components, outcome)
        if outcome.promoted
        else {"pushed": False, "reason": "not promoted"}
    )
    hub = JobResult(hub=HubPush(**pushed))
    _retrying(store.merge_result, job_id, hub, token=token, what="result", **retry)
    done = _retrying(
        store.update,
        job_id,
        token=token,
        state="succeeded",
        stage="done",
        detail=None,
        progress=1.0,
        metrics=outcome.summary(),
        model_version=outcome.model_version,
        finished_at=datetime.now(UTC),
        what="job end",
        **retry,
    )
    if not done:
        log.error("job %s: lease lost before the outcome was recorded", job_id)
        return 3
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not sys.stderr.isatty():  # the job's log file: progress bars (embedding, CV) as plain lines
        sys.stderr = PlainLines(sys.stderr, every_s=PROGRESS_LOG_S)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if len(argv) not in (1, 2):
        print(
            "usage: python -m model_runner.jobs.train_worker JOB_ID [LEASE_TOKEN]  (settings JSON on stdin)",
            file=sys.stderr,
        )
        return 2
    settings = load_settings(sys.stdin.read())
    if settings.train_worker_nice:
        os.nice(settings.train_worker_nice)  # inherited by the CV pool's processes
    log.info("training worker for job %s, pid %d, niceness %d", argv[0], os.getpid(), os.nice(0))
    return run_job(settings, argv[0], argv[1] if len(argv) > 1 else None)


if __name__ == "__main__":
    sys.exit(main())
