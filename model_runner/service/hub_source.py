"""``model_source=hub``: each task serves the model of its Hub repo, and follows the repo's revision.

``HubSource.load`` is the ModelManager's loader in hub mode (so a Hub model goes through the same
validated, serialised, atomic swap as a registry one): resolve the task's revision to a commit sha,
stop there when that commit already serves, download ``tweetpulse/*`` at that sha under
``<home>/hub/<task>/<sha>/``, verify it (the Hub's LFS sha256 / blob sha1, then ``checksums.json``)
and load it like a registry download. Neither MLflow nor the database is touched.

``HubSource.poll`` (an asyncio task of the service) reloads every task every ``hub_poll_s`` seconds
(jittered): an unchanged sha costs one ``model_info`` call; a new one is downloaded and swapped in
without a restart. Network errors never end the polling nor the serving: the old model stays, the
error is logged and reported (``/model/tasks``), and the next poll tries again. A commit whose model
folder is inconsistent is refused once and not downloaded again; the next commit is. When the Hub
cannot be reached while nothing serves a task yet (start-up), the task's last verified download of
the same repo and revision serves until the Hub answers again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
from datetime import UTC, datetime
from pathlib import Path

from model_runner.errors import NoChampionError
from model_runner.hub import pull
from model_runner.modeling.classifier import CONFIG_FILE
from model_runner.service.served import AlreadyServing, ModelValidationError, ServedModel, load_folder
from model_runner.settings import Settings

log = logging.getLogger(__name__)


def hub_version(registry_version: str | None, commit: pull.HubCommit) -> str:
    """The served version of a Hub commit: ``<registry version>@<sha12>`` when the pushed export records
    the registry version it came from, else ``<sha12>``."""
    return f"{registry_version}@{commit.short}" if registry_version else commit.short


class HubSource:
    def __init__(self, settings: Settings, models):
        self.settings = settings
        self.models = models  # the ModelManager: which commit serves each task now
        self._lock = threading.Lock()
        self.last_check: dict[str, datetime] = {}  # the last time the Hub answered for the task
        self.last_error: dict[str, str] = {}  # the last failed check (cleared by a good one)
        self.latest: dict[str, str] = {}  # the sha the configured revision pointed at last time
        self._refused: dict[str, tuple[str, str]] = {}  # task -> (sha, why): not downloaded again
        self.on_check = None  # callback(task, when) after each successful check (metrics)

    # --- the loader (runs on its own thread, inside ModelManager.reload) ------------------------------
    def load(self, settings: Settings, task: str, *, unless_serving: str | None = None) -> ServedModel:
        try:
            commit = pull.resolve(settings, task)
        except pull.HubModelMissing as exc:
            self._checked(task)  # the Hub answered: the model is just not there yet
            raise NoChampionError(f"no model yet on the Hub for task {task!r}: {exc}") from None
        except pull.HubPullError as exc:
            self._failed(task, str(exc))
            if self.models.get(task) is None and (local := pull.last_verified(settings, task)):
                # nothing serves yet (start-up) and the Hub cannot be asked: the last verified download
                commit, folder = local
                log.warning("Hub unreachable: %s serves its last verified download %s", task, commit.short)
                return self._load_folder(settings, task, folder, commit)
            raise
        self._checked(task, commit.sha)
        served = self.models.get(task)
        if served is not None and served.hub and served.hub.get("commit") == commit.sha:
            raise AlreadyServing(served.version)
        with self._lock:
            refused = self._refused.get(task)
        if refused and refused[0] == commit.sha:
            raise ModelValidationError(f"{commit.repo_id}@{commit.short} was refused: {refused[1]}")
        try:
            folder = pull.download(settings, commit)
        except pull.ModelFolderInvalid as exc:
            self._refuse(task, commit, str(exc))
            raise ModelValidationError(str(exc)) from None
        except pull.HubIntegrityError as exc:  # a bad transfer: the next poll downloads again
            self._failed(task, str(exc))
            raise
        except pull.HubModelMissing as exc:  # the commit vanished between resolve and download
            self._failed(task, str(exc))
            raise pull.HubUnavailable(str(exc)) from None
        try:
            candidate = self._load_folder(settings, task, folder, commit)
        except ModelValidationError as exc:
            self._refuse(task, commit, str(exc))
            raise
        keep = {commit.sha} | ({served.hub["commit"]} if served is not None and served.hub else set())
        pull.prune(settings, task, keep)
        pull.mark_verified(folder, commit)
        return candidate

    def _load_folder(
        self, settings: Settings, task: str, folder: Path, commit: pull.HubCommit
    ) -> ServedModel:
        try:
            meta = json.loads((folder / CONFIG_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise ModelValidationError(f"{commit.repo_id}@{commit.short}: {CONFIG_FILE}: {exc}") from None
        return load_folder(
            folder,
            task=task,
            name=f"{settings.registry_prefix}-{task}",
            version=hub_version(pull.registry_version(folder), commit),
            run_id=meta.get("mlflow_run_id"),
            runtime=settings.serving_runtime,
            probe_texts=settings.runtime_probe_texts,
            min_agreement=settings.quant_min_agreement,
            max_drop=settings.quant_max_drop,
            source=f"hf://{commit.repo_id}@{commit.sha}",
            hub=commit.describe(),
        )

    def _checked(self, task: str, sha: str | None = None) -> None:
        now = datetime.now(UTC)
        with self._lock:
            self.last_check[task] = now
            self.last_error.pop(task, None)
            if sha:
                self.latest[task] = sha
        if self.on_check:
            self.on_check(task, now)

    def _failed(self, task: str, why: str) -> None:
        with self._lock:
            self.last_error[task] = why
        log.warning("Hub check of %s failed, the served model stays: %s", task, why)

    def _refuse(self, task: str, commit: pull.HubCommit, why: str) -> None:
        with self._lock:
            self._refused[task] = (commit.sha, why)
        pull.prune(
            self.settings,
            task,
            {m.hub["commit"]} if (m := self.models.get(task)) is not None and m.hub else set(),
        )
        log.error("Hub commit %s@%s refused for %s: %s", commit.repo_id, commit.short, task, why)

    # --- reporting -----------------------------------------------------------------------------------
    def status(self) -> dict[str, dict]:
        with self._lock:
            out = {}
            for task in self.models.tasks:
                served = self.models.get(task)
                check = self.last_check.get(task)
                out[task] = {
                    "repo_id": pull.repo_for(self.settings, task),
                    "revision": pull.revision_for(self.settings, task),
                    "latest_commit": self.latest.get(task),
                    "serving_commit": served.hub.get("commit") if served is not None and served.hub else None,
                    "last_check": check.isoformat() if check else None,
                    "last_error": self.last_error.get(task),
                }
            return out

    # --- the poller ----------------------------------------------------------------------------------
    async def poll(self, reload, *, started: asyncio.Event | None = None) -> None:
        """Every ``hub_poll_s`` (+-20% jitter, so replicas do not ask in step): ``reload(task)`` each
        task. Waits for the start-up load first. Never ends on an error."""
        if started is not None:
            await started.wait()
        period = self.settings.hub_poll_s
        while True:
            await asyncio.sleep(period * random.uniform(0.8, 1.2))
            for task in self.models.tasks:
                try:
                    await reload(task)
                except asyncio.CancelledError:
                    raise
                except Exception:  # a poll never ends the polling
                    log.exception("Hub poll of %s failed", task)
