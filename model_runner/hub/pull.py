"""Serve from the Hub: resolve a task's revision to a commit, download its native model folder, verify it.

The repo layout (what ``push`` writes): the root holds a portable ONNX export and the card; the
``tweetpulse/`` folder holds the model exactly as ``TweetClassifier.save`` wrote it, with its
``checksums.json``. Only that folder is downloaded, plus the root ``config.json``, which records the
registry version the push came from.

Three checks before anything is loaded: every downloaded file matches what the Hub says it committed
(the LFS sha256 of large files, the git blob sha1 of the others, and the size), every file matches
the folder's own ``checksums.json`` (``verify_files``), and the required files are all there.

Errors are typed so the service can tell them apart: ``HubModelMissing`` (no repo, no revision or no
model folder yet: like "no champion"), ``HubIntegrityError`` (a file is not what was committed: the
download is discarded, a later try may work), ``ModelFolderInvalid`` (the committed folder itself is
inconsistent: retrying the same commit cannot help) and ``HubUnavailable`` (network, timeout, 5xx).
Messages never contain the token.

A download that verified and loaded is marked (``mark_verified``); when the Hub cannot be reached at
start-up the service serves the newest marked download of the configured repo and revision again,
after checking it once more (``last_verified``), instead of serving nothing.

Timeouts: ``hub_timeout_s`` per metadata call (``model_info``, the HEAD of each file) and
huggingface_hub's ``HF_HUB_DOWNLOAD_TIMEOUT`` per read of a download. The process-wide client factory
is left alone on purpose: replacing it (as ``push.hub_timeout`` does around a push) closes the shared
client under every other Hub call in flight, and a poll runs every ``hub_poll_s``. The service bounds
a whole load with ``reload_timeout_s`` anyway.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from model_runner.modeling.classifier import CHECKSUMS_FILE, file_sha256, verify_files
from model_runner.settings import Settings

log = logging.getLogger(__name__)

MODEL_SUBFOLDER = "tweetpulse"
EXPORT_CONFIG = "config.json"  # the portable export's config: {"tweetpulse": {"version": ...}}
VERIFIED_MARKER = ".tweetpulse-verified.json"  # beside a download that verified and loaded
_SHA = re.compile(r"^[0-9a-f]{40}$")


class HubPullError(RuntimeError):
    """Base of every pull failure."""


class HubModelMissing(HubPullError, LookupError):
    """The repo, the revision or the model folder in it does not exist (yet)."""


class HubUnavailable(HubPullError):
    """The Hub could not be asked (network, timeout, 429/5xx, auth): keep serving, try again later."""


class HubIntegrityError(HubPullError):
    """A downloaded file differs from what the Hub says it committed (size, LFS sha256, blob sha1)."""


class ModelFolderInvalid(HubPullError, ValueError):
    """The committed model folder is incomplete or its files do not match its ``checksums.json``."""


@dataclass(frozen=True)
class HubFile:
    path: str
    size: int | None
    blob_id: str | None
    lfs_sha256: str | None


@dataclass(frozen=True)
class HubCommit:
    """A task's revision resolved to one immutable commit."""

    task: str
    repo_id: str
    revision: str  # as asked: a branch, tag or sha
    sha: str
    files: tuple[HubFile, ...]

    @property
    def short(self) -> str:
        return self.sha[:12]

    def model_files(self) -> list[HubFile]:
        return [f for f in self.files if f.path.startswith(f"{MODEL_SUBFOLDER}/")]

    def downloaded_files(self) -> list[HubFile]:
        """The model folder plus the export's root ``config.json`` (it records the registry version)."""
        return [f for f in self.files if f.path.startswith(f"{MODEL_SUBFOLDER}/") or f.path == EXPORT_CONFIG]

    def describe(self) -> dict:
        return {"repo_id": self.repo_id, "revision": self.revision, "commit": self.sha}


def repo_for(settings: Settings, task: str) -> str | None:
    """The task's Hub repo (``hub_repo_id`` with ``{task}``); no token needed to read a public repo."""
    if not settings.hub_repo_id:
        return None
    return settings.hub_repo_id.format(task=task)


def revision_for(settings: Settings, task: str) -> str:
    """``hub_revision`` for ``task``: one value for every task (``v3``) or ``sentiment=1a2b,emotion=main``;
    unset (or a task not named) = ``main``."""
    raw = (settings.hub_revision or "").strip()
    if not raw:
        return "main"
    if "=" not in raw:
        return raw
    for part in raw.split(","):
        name, _, value = part.partition("=")
        if name.strip() == task and value.strip():
            return value.strip()
    return "main"


def _token(settings: Settings) -> str | bool:
    # False: never fall back to a token saved on this machine; settings already read HF_TOKEN
    return settings.hub_token.get_secret_value() if settings.hub_token else False


def _describe(exc: BaseException, token: str | bool) -> str:
    from model_runner.hub.push import _describe as describe_push
    from model_runner.hub.push import _mask

    return _mask(describe_push(exc), token if isinstance(token, str) else "")


def _classify(exc: BaseException, what: str, token: str | bool) -> HubPullError:
    """One of our errors for a huggingface_hub / httpx error (raised outside ``except``: see push.py)."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    text = f"{what}: {_describe(exc, token)}"
    if isinstance(exc, RepositoryNotFoundError | RevisionNotFoundError | EntryNotFoundError):
        return HubModelMissing(text)
    return HubUnavailable(text)


def _with_retries(settings: Settings, what: str, fn):
    """``fn()`` retried ``hub_retries`` times on transient errors (short backoff: the poller retries too)."""
    from model_runner.hub.push import is_transient, retry_after_s

    token = _token(settings)
    delay = 0.5
    for attempt in range(settings.hub_retries + 1):
        try:
            return fn()
        except Exception as exc:  # classified below
            if attempt < settings.hub_retries and is_transient(exc):
                wait = min(max(delay, retry_after_s(exc) or 0.0), 5.0)
                log.warning("Hub %s failed (%s); retrying in %.1fs", what, _describe(exc, token), wait)
                time.sleep(wait)
                delay *= 2
                continue
            error = _classify(exc, what, token)
        raise error


def resolve(settings: Settings, task: str) -> HubCommit:
    """The commit the task's configured revision points at now, with the Hub's file metadata."""
    from huggingface_hub import HfApi

    repo_id = repo_for(settings, task)
    if repo_id is None:
        raise HubModelMissing("no Hub repo configured (hub_repo_id)")
    revision = revision_for(settings, task)
    api = HfApi(endpoint=settings.hub_endpoint, token=_token(settings))

    def ask():
        return api.model_info(repo_id, revision=revision, files_metadata=True, timeout=settings.hub_timeout_s)

    info = _with_retries(settings, f"model_info {repo_id}@{revision}", ask)
    if not info.sha:
        raise HubModelMissing(f"{repo_id} has no commit yet")
    files = tuple(
        HubFile(
            path=s.rfilename,
            size=s.size,
            blob_id=s.blob_id,
            lfs_sha256=s.lfs.sha256 if s.lfs else None,
        )
        for s in info.siblings or ()
    )
    commit = HubCommit(task=task, repo_id=repo_id, revision=revision, sha=info.sha, files=files)
    if not commit.model_files():
        raise HubModelMissing(f"{repo_id}@{commit.short} has no {MODEL_SUBFOLDER}/ model folder")
    return commit


def _git_blob_sha1(path: Path) -> str:
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_against_hub(root: Path, commit: HubCommit) -> None:
    """Every downloaded file of ``commit`` is under ``root`` with the size and hash the Hub reported."""
    for entry in commit.downloaded_files():
        local = root / entry.path
        if not local.is_file():
            raise HubIntegrityError(f"{entry.path} of {commit.repo_id}@{commit.short} was not downloaded")
        if entry.size is not None and local.stat().st_size != entry.size:
            raise HubIntegrityError(
                f"{entry.path}: {local.stat().st_size} bytes, the Hub committed {entry.size}"
            )
        if entry.lfs_sha256:
            if file_sha256(local) != entry.lfs_sha256:
                raise HubIntegrityError(f"{entry.path} does not match the sha256 the Hub committed")
        elif entry.blob_id and _git_blob_sha1(local) != entry.blob_id:
            raise HubIntegrityError(f"{entry.path} does not match the blob the Hub committed")


def snapshot_root(settings: Settings, task: str) -> Path:
    """Where this task's downloaded commits live: ``<home>/hub/<task>/<sha>/``."""
    return settings.resolved_home() / "hub" / task


def download(settings: Settings, commit: HubCommit) -> Path:
    """Download ``tweetpulse/*`` of ``commit`` (by sha, so a push meanwhile cannot mix two commits),
    verify it, return the model folder. A folder that fails a check is deleted."""
    from huggingface_hub import snapshot_download

    if not _SHA.match(commit.sha):
        raise HubUnavailable(f"{commit.repo_id}: the Hub answered an unusable commit id {commit.sha!r}")
    root = snapshot_root(settings, commit.task) / commit.sha
    token = _token(settings)

    def fetch() -> Path:
        snapshot_download(
            commit.repo_id,
            revision=commit.sha,
            allow_patterns=[f"{MODEL_SUBFOLDER}/*", EXPORT_CONFIG],
            local_dir=root,
            endpoint=settings.hub_endpoint,
            token=token,
            etag_timeout=settings.hub_timeout_s,
        )
        return root

    for attempt in (1, 2):
        _with_retries(settings, f"download {commit.repo_id}@{commit.short}", fetch)
        try:
            verify_against_hub(root, commit)
            break
        except HubIntegrityError:
            # a stale or damaged local copy is re-downloaded once; a second mismatch is the Hub's
            shutil.rmtree(root, ignore_errors=True)
            if attempt == 2:
                raise
            log.warning("download of %s@%s did not verify; downloading again", commit.repo_id, commit.short)
    folder = root / MODEL_SUBFOLDER
    try:
        if not (folder / CHECKSUMS_FILE).is_file():
            raise ValueError(f"the model folder has no {CHECKSUMS_FILE}")
        verify_files(folder)
    except (OSError, ValueError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        raise ModelFolderInvalid(f"{commit.repo_id}@{commit.short}: {exc}") from None
    return folder


def mark_verified(model_folder: Path, commit: HubCommit) -> None:
    """Record beside a download that it verified and loaded: ``last_verified`` may serve it again when
    the Hub cannot be reached at start-up."""
    data = {**commit.describe(), "task": commit.task, "files": [asdict(f) for f in commit.files]}
    (Path(model_folder).parent / VERIFIED_MARKER).write_text(json.dumps(data, indent=1))


def last_verified(settings: Settings, task: str) -> tuple[HubCommit, Path] | None:
    """The newest download of ``task`` that was verified and served for the configured repo and
    revision, checked again (the Hub's digests recorded then, and ``checksums.json``); None if none."""
    repo_id, revision = repo_for(settings, task), revision_for(settings, task)
    root = snapshot_root(settings, task)
    markers = sorted(root.glob(f"*/{VERIFIED_MARKER}"), key=lambda p: p.stat().st_mtime, reverse=True)
    for marker in markers:
        try:
            data = json.loads(marker.read_text())
            if data.get("repo_id") != repo_id or data.get("revision") != revision:
                continue
            files = tuple(HubFile(**f) for f in data["files"])
            commit = HubCommit(task=task, repo_id=repo_id, revision=revision, sha=data["commit"], files=files)
            verify_against_hub(marker.parent, commit)
            verify_files(marker.parent / MODEL_SUBFOLDER)
        except (OSError, ValueError, KeyError, TypeError, HubIntegrityError) as exc:
            log.warning("local copy %s not usable: %s", marker.parent, exc)
            continue
        return commit, marker.parent / MODEL_SUBFOLDER
    return None


def registry_version(model_folder: Path) -> str | None:
    """The registry version the export beside ``model_folder`` records (``config.json`` at the repo
    root: ``{"tweetpulse": {"version": ...}}``); None when it records none."""
    try:
        config = json.loads((Path(model_folder).parent / EXPORT_CONFIG).read_text())
    except (OSError, ValueError):
        return None
    block = config.get("tweetpulse") if isinstance(config, dict) else None
    version = block.get("version") if isinstance(block, dict) else None
    return str(version) if version not in (None, "") else None


def prune(settings: Settings, task: str, keep: set[str]) -> None:
    """Delete downloaded commits of ``task`` other than ``keep`` (shas)."""
    root = snapshot_root(settings, task)
    if not root.is_dir():
        return
    for child in root.iterdir():
        if child.is_dir() and child.name not in keep:
            shutil.rmtree(child, ignore_errors=True)
