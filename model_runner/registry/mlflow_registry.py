"""Per-task registered models in the MLflow model registry, with a ``champion`` alias each.

Every call goes through one ``MlflowClient`` bound to the given tracking URI (which is also used as
the registry URI), so this class never reads or changes MLflow's process-wide settings. The single
exception is :meth:`ModelRegistry.log_and_register`: MLflow can only log a model into the *active*
run, which belongs to the fluent (global) API; it therefore requires that run to exist and the
global tracking URI to be the one this registry talks to.

Remote tracking servers: MLflow's REST client retries transient HTTP failures with backoff, bounded by
``MLFLOW_HTTP_REQUEST_TIMEOUT`` / ``_MAX_RETRIES`` / ``_BACKOFF_FACTOR``. MLflow reads those from the
environment on every request (its defaults, 120 s x 7 retries, let one call hang for many minutes);
:func:`apply_http_limits` sets them from the settings, and ``Components.registry`` calls it.

Integrity: every version is registered with the sha256 of its manifest as a tag, and
:meth:`ModelRegistry.download_verified` refuses a version that did not pass the gate or whose files are
not the registered ones (see :mod:`model_runner.registry.integrity`).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

from model_runner.registry.integrity import MANIFEST_TAG, check_folder, check_version, manifest_digest
from model_runner.registry.pyfunc import MODEL_ARTIFACT, log_pyfunc

_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_MISSING = {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}
_EXISTS = {"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"}
READY_TIMEOUT_S = 300.0


def apply_http_limits(timeout_s: int, max_retries: int, backoff_factor: int) -> None:
    """Bound every MLflow HTTP request of this process (and of the processes it starts).

    Worst case per registry call: (max_retries + 1) x timeout_s plus backoff_factor x (1 + 2 + ...) s.
    """
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(int(timeout_s))
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(int(max_retries))
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = str(int(backoff_factor))


class ModelNotFoundError(LookupError):
    """The task has no registered model, or no version under the requested alias/number."""


@dataclass
class ModelVersionInfo:
    name: str
    version: str
    run_id: str | None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    created_at: int = 0  # milliseconds since the epoch, as MLflow stores it

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @classmethod
    def from_mlflow(cls, mv: ModelVersion, aliases: list[str] | None = None) -> ModelVersionInfo:
        return cls(
            name=mv.name,
            version=str(mv.version),
            run_id=mv.run_id or None,
            tags=dict(mv.tags or {}),
            aliases=sorted(aliases if aliases is not None else (mv.aliases or [])),
            created_at=int(mv.creation_timestamp or 0),
        )


class ModelRegistry:
    CHAMPION = "champion"

    def __init__(self, tracking_uri: str, *, name_prefix: str = "tweetpulse"):
        self.tracking_uri = tracking_uri
        self.name_prefix = name_prefix

    @cached_property
    def _client(self) -> MlflowClient:
        # Lazy: building a client for a sqlite URI creates/migrates the database on the spot (seconds).
        # registry_uri pinned too: otherwise MLFLOW_REGISTRY_URI could silently send versions elsewhere.
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def model_name(self, task: str) -> str:
        name = f"{self.name_prefix}-{task}"
        # Names end up inside search filter strings; keep them to a safe alphabet.
        if not _NAME_OK.match(name):
            raise ValueError(f"invalid task/model name {name!r}")
        return name

    # --- writing -------------------------------------------------------------------------------------
    def log_and_register(
        self, model_dir: Path, *, task: str, input_example: list[str], tags: dict[str, str] | None = None
    ) -> ModelVersionInfo:
        """Log ``model_dir`` as a pyfunc in the active run and register it as a new version.

        Must be called inside ``mlflow.start_run()`` (the training parent run) in the same thread,
        with ``mlflow.set_tracking_uri`` set to this registry's URI.

        The logged model carries its code and PyPI-only requirements (see :mod:`.pyfunc`), so any
        MLflow user can load or serve the version. Logging it creates the LoggedModel, and MLflow
        links the metrics the run already has at step 0 to it: the held-out evaluation that
        ``RunTracker.log_evaluation`` logged before.
        """
        run = mlflow.active_run()
        if run is None:
            raise RuntimeError("log_and_register needs an active MLflow run (mlflow.start_run())")
        active_uri = mlflow.get_tracking_uri()
        if _norm(active_uri) != _norm(self.tracking_uri):
            raise RuntimeError(
                f"the active run logs to {active_uri!r}, this registry uses {self.tracking_uri!r}"
            )
        name = self.model_name(task)
        # Before logging: the digest of the folder as it is now is what every later load must match.
        digest = manifest_digest(Path(model_dir))
        info = log_pyfunc(model_dir, name=name, input_example=input_example)
        self._ensure_registered_model(name)
        version_tags = {"task": task, **{k: str(v) for k, v in (tags or {}).items()}, MANIFEST_TAG: digest}
        # Registered through our client (not log_model's registered_model_name, which uses the global
        # registry URI); tags go in with the version so no reader ever sees it untagged.
        mv = self._client.create_model_version(
            name, source=info.model_uri, run_id=run.info.run_id, tags=version_tags, model_id=info.model_id
        )
        self._link_logged_model(info.model_id, name, str(mv.version))
        return ModelVersionInfo.from_mlflow(self._wait_ready(name, str(mv.version)), aliases=[])

    def promote(self, task: str, version: str) -> None:
        """Point ``champion`` at ``version``: one alias row upsert, so readers see old or new, never none.

        Not gated here (an operator may plant any alias, e.g. to test an alert); loading is:
        ``download_verified`` refuses a champion whose ``gate.decision`` is not ``promoted``.
        """
        name = self.model_name(task)
        mv = self._get_version(name, str(version))
        if mv.status != "READY":
            raise ValueError(f"{name} version {version} is {mv.status}, not READY")
        self._client.set_registered_model_alias(name, self.CHAMPION, str(version))

    def set_tags(self, task: str, version: str, tags: dict[str, str]) -> None:
        if MANIFEST_TAG in tags:
            raise ValueError(f"{MANIFEST_TAG} is recorded at registration and never changed")
        name = self.model_name(task)
        self._get_version(name, str(version))
        for key, value in tags.items():
            self._client.set_model_version_tag(name, str(version), key, str(value))

    # --- reading -------------------------------------------------------------------------------------
    def champion(self, task: str) -> ModelVersionInfo | None:
        name = self.model_name(task)
        aliases = self._aliases(name)
        if aliases is None or self.CHAMPION not in aliases:
            return None
        version = aliases[self.CHAMPION]
        mv = self._get_version(name, version)
        return ModelVersionInfo.from_mlflow(mv, aliases=[a for a, v in aliases.items() if v == version])

    def versions(self, task: str, limit: int = 10) -> list[ModelVersionInfo]:
        """Newest first. Aliases come from the registered model: search results may omit them."""
        name = self.model_name(task)
        aliases = self._aliases(name)
        if aliases is None:
            return []
        found = self._client.search_model_versions(
            f"name = '{name}'", max_results=max(1, limit), order_by=["version_number DESC"]
        )
        return [
            ModelVersionInfo.from_mlflow(mv, aliases=[a for a, v in aliases.items() if v == str(mv.version)])
            for mv in list(found)[:limit]
        ]

    def download(
        self, task: str, *, version: str | None = None, alias: str | None = CHAMPION, dst: Path | None = None
    ) -> Path:
        """Fetch a version (by number, else by alias) and return its classifier folder.

        The whole MLflow model (MLmodel, entry script, requirements) lands in ``dst`` (a fresh temp
        folder when omitted: never the store's own files, which callers must not touch); the returned
        path is the logged ``model`` artifact folder inside it, ready for ``TweetClassifier.load``.
        """
        name = self.model_name(task)
        if version is None:
            if alias is None:
                raise ValueError("download needs a version or an alias")
            aliases = self._aliases(name)
            if aliases is None or alias not in aliases:
                raise ModelNotFoundError(f"{name} has no version with alias {alias!r}")
            version = aliases[alias]
        self._get_version(name, str(version))
        target = Path(dst) if dst is not None else Path(tempfile.mkdtemp(prefix=f"{name}-v{version}-"))
        # Not "models:/name/version": MLflow resolves those through the *global* registry URI even
        # when one is passed in, so resolve to the storage location with our own client first.
        source = self._client.get_model_version_download_uri(name, str(version))
        root = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=source, dst_path=str(target), tracking_uri=self.tracking_uri
            )
        )
        # MLflow keeps the source folder's basename under artifacts/, so ask MLmodel where it went.
        artifacts = Model.load(root).flavors["python_function"]["artifacts"]
        return root / artifacts[MODEL_ARTIFACT]["path"]

    def download_verified(self, task: str, info: ModelVersionInfo, *, dst: Path | None = None) -> Path:
        """:meth:`download` of a version that must be trusted to be loaded, or ``UntrustedVersionError``.

        ``info`` comes from :meth:`champion` or :meth:`versions` (it carries the tags). Refused before
        any download: a version that did not pass the gate or has no manifest digest; after it: files
        that are not the registered ones. The folder's files are checked against the manifest by
        ``verify_files`` when it is loaded.
        """
        if info.name != self.model_name(task):
            raise ValueError(f"{info.name} is not the registered model of task {task!r}")
        label = f"{info.name}/{info.version}"
        check_version(info.tags, label)
        folder = self.download(task, version=info.version, alias=None, dst=dst)
        check_folder(folder, info.tags, label)
        return folder

    def run_metrics(self, run_id: str) -> dict[str, float]:
        return {k: float(v) for k, v in self._client.get_run(run_id).data.metrics.items()}

    # --- helpers -------------------------------------------------------------------------------------
    def _aliases(self, name: str) -> dict[str, str] | None:
        """alias -> version of the registered model, or None when the model does not exist."""
        try:
            model = self._client.get_registered_model(name)
        except MlflowException as e:
            if e.error_code in _MISSING:
                return None
            raise
        return {alias: str(v) for alias, v in (model.aliases or {}).items()}

    def _get_version(self, name: str, version: str) -> ModelVersion:
        try:
            return self._client.get_model_version(name, version)
        except MlflowException as e:
            if e.error_code in _MISSING:
                raise ModelNotFoundError(f"{name} has no version {version}") from e
            raise

    def _ensure_registered_model(self, name: str) -> None:
        try:
            self._client.create_registered_model(name)
        except MlflowException as e:
            if e.error_code not in _EXISTS:  # a concurrent or earlier training created it
                raise

    def _link_logged_model(self, model_id: str, name: str, version: str) -> None:
        # What mlflow.register_model does too: lets the LoggedModel page list its registered versions.
        model = self._client.get_logged_model(model_id)
        links = json.loads(model.tags.get(MLFLOW_MODEL_VERSIONS, "[]"))
        links.append({"name": name, "version": version})
        self._client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(links)})

    def _wait_ready(self, name: str, version: str, timeout_s: float = READY_TIMEOUT_S) -> ModelVersion:
        # Local stores are READY at once; servers that copy artifacts asynchronously go through
        # PENDING_REGISTRATION first.
        deadline = time.monotonic() + timeout_s
        delay = 0.2
        while True:
            mv = self._client.get_model_version(name, version)
            if mv.status == "READY":
                return mv
            if mv.status == "FAILED_REGISTRATION":
                raise RuntimeError(f"{name} version {version} failed to register: {mv.status_message}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} version {version} still {mv.status} after {timeout_s:.0f}s")
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _norm(uri: str) -> str:
    return uri.rstrip("/")
