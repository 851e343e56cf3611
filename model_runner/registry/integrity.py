"""What a registered version must prove before it is loaded: it passed the gate and its files are the
ones that were registered.

At registration the sha256 of the model folder's ``checksums.json`` (the manifest that lists the sha256
of every other file) is stored as the model version tag ``manifest_sha256``, in the same call that
creates the version. At load three things are refused, each with its own message:

- a version whose ``gate.decision`` tag is not ``promoted`` (a ``champion`` alias moved by hand to a
  version the gate rejected, or that never went through it);
- a version without a ``manifest_sha256`` tag (registered before these checks or outside tweetpulse);
- a downloaded folder whose ``checksums.json`` does not hash to the tag, or that holds a file the
  manifest does not list (weights edited and the manifest regenerated, or files planted beside them).

Each file is then checked against the manifest by ``verify_files`` when the folder is loaded, so a
folder that passes both is byte for byte what the training run registered.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from model_runner.modeling.classifier import CHECKSUMS_FILE as MANIFEST_FILE

MANIFEST_TAG = "manifest_sha256"
GATE_TAG = "gate.decision"
GATE_PASSED = "promoted"


class UntrustedVersionError(ValueError):
    """A registered version that must not be loaded: ungated, untagged or altered after registration."""


def manifest_digest(folder: Path) -> str:
    """sha256 of the folder's manifest file, as ``sha256sum checksums.json`` prints it."""
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        raise UntrustedVersionError(f"model folder {Path(folder).name} has no {MANIFEST_FILE}")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_gate(tags: dict[str, str], label: str) -> None:
    """Refuse a version the promotion gate did not pass (``label``: ``name/version`` for messages)."""
    decision = tags.get(GATE_TAG)
    if decision != GATE_PASSED:
        found = "no gate tags" if decision is None else f"{GATE_TAG}={decision}"
        raise UntrustedVersionError(
            f"{label} never passed the promotion gate ({found}); a champion alias may only point at a "
            "version a training run promoted"
        )


def check_manifest_tag(tags: dict[str, str], label: str) -> str:
    """The recorded manifest digest; refuse a version registered without one."""
    expected = tags.get(MANIFEST_TAG)
    if not expected:
        raise UntrustedVersionError(
            f"{label} has no {MANIFEST_TAG} tag (registered before manifest digests were recorded, or "
            "outside tweetpulse), so its files cannot be verified; retrain to register a verifiable version"
        )
    return expected


def check_folder(folder: Path, tags: dict[str, str], label: str) -> None:
    """Refuse a downloaded folder whose manifest is not the registered one or that has unlisted files."""
    folder = Path(folder)
    expected = check_manifest_tag(tags, label)
    actual = manifest_digest(folder)
    if actual != expected:
        raise UntrustedVersionError(
            f"{label}: {MANIFEST_FILE} has sha256 {actual[:12]}..., the {MANIFEST_TAG} recorded at "
            f"registration is {expected[:12]}...: the stored model was changed after it was registered"
        )
    try:
        listed = set(json.loads((folder / MANIFEST_FILE).read_text()))
    except (ValueError, TypeError) as exc:
        raise UntrustedVersionError(f"{label}: {MANIFEST_FILE} is not a JSON object: {exc}") from exc
    present = {p.name for p in folder.iterdir() if p.name != MANIFEST_FILE}
    extra = sorted(present - listed)
    if extra:
        raise UntrustedVersionError(
            f"{label}: the model folder holds files its {MANIFEST_FILE} does not list: {', '.join(extra)}"
        )


def check_version(tags: dict[str, str], label: str) -> None:
    """The checks that need no download: gate passed and a manifest digest recorded."""
    check_gate(tags, label)
    check_manifest_tag(tags, label)
