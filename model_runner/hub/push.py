"""Push a model's portable export plus a generated model card to the Hugging Face Hub.

The repo layout is ``modeling/export.py``'s folder: the root holds the portable ONNX export (what a plain
``transformers``/``optimum`` client loads; no ``model.safetensors`` there, or transformers would load the
bare encoder with a random head) and README.md; ``tweetpulse/`` holds the native model folder exactly as
``TweetClassifier.save`` wrote it, with its ``checksums.json`` (what the service serves from the Hub,
``hub/pull.py``). Given a native folder, ``push_model`` builds the export first.

One ``create_repo`` (idempotent) and then one commit holding every file and README.md, so a
reader of the repo never sees a half-uploaded model. Each of the two steps is retried on transient
failures (network, timeout, 408/429/5xx) with exponential backoff; anything else fails at once.
"""

from __future__ import annotations

import email.utils
import fnmatch
import json
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx2
from huggingface_hub import CommitOperationAdd, HfApi, set_client_factory
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from huggingface_hub.utils import _http as hf_http
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from model_runner.hub.card import render_model_card
from model_runner.modeling.classifier import CONFIG_FILE, verify_files
from model_runner.modeling.export import NATIVE_DIR, is_export

log = logging.getLogger(__name__)
T = TypeVar("T")

# What TweetClassifier.save writes (tokenizer names cover BERT, BPE and sentencepiece encoders): pushed
# under tweetpulse/; any other file in the folder (editor backups, optimizer state, a stale README)
# stays local.
ALLOWED_PATTERNS = (
    "config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "model-*-of-*.safetensors",
    "head.safetensors",
    "label_map.json",
    "tweetpulse.json",
    "checksums.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)
# What the root of the export holds (README.md is the card, generated at each push).
PORTABLE_PATTERNS = (
    "config.json",
    "model.onnx",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
)
README = "README.md"
_TRANSIENT_STATUS = frozenset({408, 429})  # plus every 5xx
# huggingface_hub keeps one process-wide httpx client; serialise pushes so that one push restoring the
# client factory cannot pull the timeout out from under another push still running
_CLIENT_LOCK = threading.Lock()


class HubPushError(RuntimeError):
    """The push did not happen (or did not complete); the message never contains the token."""


@dataclass(frozen=True)
class PushResult:
    repo_id: str
    commit_id: str
    commit_url: str
    files: list[str]


def _allowed(folder: Path, patterns: tuple[str, ...]) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and any(fnmatch.fnmatchcase(p.name, pat) for pat in patterns)
    )


def files_to_push(export: Path) -> dict[str, Path]:
    """``path_in_repo -> file`` for an export folder: the allowed root files and ``tweetpulse/`` files
    (each folder has its own allow-list)."""
    export = Path(export)
    files = {p.name: p for p in _allowed(export, PORTABLE_PATTERNS)}
    files.update({f"{NATIVE_DIR}/{p.name}": p for p in _allowed(export / NATIVE_DIR, ALLOWED_PATTERNS)})
    return dict(sorted(files.items()))


@contextmanager
def hub_timeout(timeout_s: float) -> Iterator[None]:
    """Give huggingface_hub's HTTP client a timeout for the duration of the block.

    huggingface_hub 2.x builds its shared httpx client with ``timeout=None`` (no limit at all) and most
    API calls pass no per-request timeout, so the only lever is the client factory. The previous factory
    is wrapped (keeping a caller's proxy or TLS settings) and put back afterwards.
    """
    previous = getattr(hf_http, "_GLOBAL_CLIENT_FACTORY", hf_http.default_client_factory)

    def factory() -> httpx2.Client:
        client = previous()
        client.timeout = httpx2.Timeout(timeout_s)
        return client

    with _CLIENT_LOCK:
        set_client_factory(factory)
        try:
            yield
        finally:
            set_client_factory(previous)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    # LFS uploads surface as RuntimeError("Error while uploading ...") caused by the HTTP error
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _status(exc: BaseException) -> int | None:
    return next((e.response.status_code for e in _chain(exc) if isinstance(e, HfHubHTTPError)), None)


def is_transient(exc: BaseException) -> bool:
    if any(isinstance(e, OfflineModeIsEnabled) for e in _chain(exc)):
        return False
    status = _status(exc)
    if status is not None:
        return status in _TRANSIENT_STATUS or status >= 500
    return any(isinstance(e, httpx2.TransportError | TimeoutError | ConnectionError) for e in _chain(exc))


def retry_after_s(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (Retry-After as seconds or as an HTTP date), if it did."""
    header = next(
        (e.response.headers.get("retry-after") for e in _chain(exc) if isinstance(e, HfHubHTTPError)), None
    )
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(header).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _mask(text: str, token: str) -> str:
    return text.replace(token, "***") if token else text


def _describe(exc: BaseException) -> str:
    status = _status(exc)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}" + (f" (HTTP {status})" if status else "") + (f": {first}" if first else "")
    # the Hub's own explanation ("Invalid credentials", "You don't have the rights ...") is the useful part
    said = next(
        (e.server_message for e in _chain(exc) if isinstance(e, HfHubHTTPError) and e.server_message), None
    )
    return text + (f"; server said: {said.strip()}" if said else "")


def _with_retries(
    step: str, fn: Callable[[], T], *, token: str, retries: int, backoff_s: float, max_backoff_s: float
) -> T:
    exponential = wait_exponential(multiplier=backoff_s, max=max_backoff_s)

    def wait(state: RetryCallState) -> float:
        asked = retry_after_s(state.outcome.exception()) if state.outcome else None
        return min(max(exponential(state), asked or 0.0), max_backoff_s)

    def before_sleep(state: RetryCallState) -> None:
        reason = _mask(_describe(state.outcome.exception()), token)
        log.warning(
            "Hub %s failed (attempt %d/%d): %s; retrying in %.1fs",
            step,
            state.attempt_number,
            retries + 1,
            reason,
            state.next_action.sleep,
        )

    retrying = Retrying(
        stop=stop_after_attempt(retries + 1),
        wait=wait,
        retry=retry_if_exception(is_transient),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retrying(fn)
    except Exception as exc:  # every failure becomes one HubPushError: callers treat a push as best effort
        attempts = retrying.statistics.get("attempt_number", 1)
        message = _mask(f"Hub {step} failed after {attempts} attempt(s): {_describe(exc)}", token)
    # raised outside the except block on purpose: the httpx error keeps the request, whose headers
    # carry the token, and chaining it would hand that to every error reporter
    raise HubPushError(message)


def push_model(
    folder: Path | str,
    *,
    repo_id: str,
    token: str,
    card_info: dict,
    endpoint: str | None = None,
    private: bool = True,
    timeout_s: float = 60.0,
    retries: int = 3,
    commit_message: str | None = None,
    backoff_s: float = 1.0,
    max_backoff_s: float = 30.0,
) -> PushResult:
    """Create ``repo_id`` if needed and commit the export plus README.md in one commit.

    ``folder``: an export (``modeling.export.build_export``: ``model.onnx`` + ``tweetpulse/``) or a native
    model folder, which is exported first (ONNX trace and checks: seconds for MiniLM). Either way the
    native files are verified against their ``checksums.json`` before anything is sent.
    """
    options = {
        "endpoint": endpoint,
        "private": private,
        "timeout_s": timeout_s,
        "retries": retries,
        "commit_message": commit_message,
        "backoff_s": backoff_s,
        "max_backoff_s": max_backoff_s,
    }
    folder = Path(folder)
    if not token:
        raise HubPushError(f"no Hub token given for {repo_id}")
    native = folder / NATIVE_DIR if is_export(folder) else folder
    try:
        verify_files(native)  # a corrupt or partial copy must not become the published model
    except (OSError, ValueError) as exc:
        raise HubPushError(f"not pushing {folder} to {repo_id}: {exc}") from None
    if is_export(folder):
        return _push_export(folder, repo_id=repo_id, token=token, card_info=card_info, **options)
    from model_runner.modeling.export import build_export

    work = Path(tempfile.mkdtemp(prefix="tp-export-"))
    try:
        try:
            export = build_export(folder, work / "export", version=_str(card_info.get("version")))
        except Exception as exc:  # an export that cannot be built or checked is not published
            raise HubPushError(f"not pushing {folder} to {repo_id}: export failed: {exc}") from None
        return _push_export(export, repo_id=repo_id, token=token, card_info=card_info, **options)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _str(value) -> str | None:
    return None if value is None else str(value)


def _push_export(
    export: Path,
    *,
    repo_id: str,
    token: str,
    card_info: dict,
    endpoint: str | None,
    private: bool,
    timeout_s: float,
    retries: int,
    commit_message: str | None,
    backoff_s: float,
    max_backoff_s: float,
) -> PushResult:
    files = files_to_push(export)
    fields = dict(card_info)
    if "max_length" not in fields:
        fields["max_length"] = json.loads((export / NATIVE_DIR / CONFIG_FILE).read_text()).get("max_length")
    card = render_model_card({**fields, "repo_id": repo_id}).encode()
    message = commit_message or f"Upload {card_info.get('model_name') or card_info['task']} model"
    if card_info.get("version") is not None and commit_message is None:
        message += f" version {card_info['version']}"
    api = HfApi(endpoint=endpoint, token=token)
    retry = {"token": token, "retries": retries, "backoff_s": backoff_s, "max_backoff_s": max_backoff_s}

    def commit():
        # operations are rebuilt per attempt: huggingface_hub mutates them and refuses to reuse them
        operations = [
            CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(p)) for name, p in files.items()
        ]
        operations.append(CommitOperationAdd(path_in_repo=README, path_or_fileobj=card))
        return api.create_commit(repo_id, operations=operations, commit_message=message, repo_type="model")

    with hub_timeout(timeout_s):
        _with_retries(
            "create_repo",
            lambda: api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True),
            **retry,
        )
        info = _with_retries("commit", commit, **retry)
    names = sorted([*files, README])
    log.info("pushed %d files to Hub repo %s: commit %s", len(names), repo_id, info.oid)
    return PushResult(repo_id=repo_id, commit_id=info.oid, commit_url=info.commit_url, files=names)
