"""The teacher's weights: joined from split packages, verified against a pinned sha256, else refused."""

import hashlib
import zipfile

import pytest

from model_runner.teacher import source
from model_runner.teacher.source import Pin, TeacherDigestError, unpack_parts, verify_pin


def _split_zip(tmp_path, weights: bytes, parts: int = 3):
    """A zip of an ``all-mpnet-base-v2/`` folder cut into ``parts`` byte ranges, like the packages."""
    joined = tmp_path / "whole.zip"
    with zipfile.ZipFile(joined, "w") as archive:
        archive.writestr("all-mpnet-base-v2/config.json", '{"model_type": "mpnet"}')
        archive.writestr("all-mpnet-base-v2/model.safetensors", weights)
        archive.writestr("all-mpnet-base-v2/desktop.ini", "junk")
        archive.writestr("elsewhere/evil.txt", "outside the model folder")
    data = joined.read_bytes()
    size = -(-len(data) // parts)
    paths = []
    for i in range(parts):
        part = tmp_path / f"all-mpnet-base-v2.zip.00{i + 1}"
        part.write_bytes(data[i * size : (i + 1) * size])
        paths.append(part)
    return paths


def _pin(weights: bytes) -> Pin:
    return Pin(revision="r" * 40, sha256=hashlib.sha256(weights).hexdigest(), size=len(weights))


def test_joined_parts_unpack_to_the_model_folder_when_the_digest_matches(tmp_path):
    weights = b"pinned weights" * 100
    dest = tmp_path / "home" / "teacher"
    folder = unpack_parts(_split_zip(tmp_path, weights), dest, _pin(weights))
    assert folder == dest
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert (folder / "model.safetensors").read_bytes() == weights


def test_a_wrong_file_is_refused_and_nothing_is_left_behind(tmp_path):
    expected = b"pinned weights" * 100
    tampered = b"pinned weighTs" * 100  # same size, one byte differs per block
    dest = tmp_path / "home" / "teacher"
    with pytest.raises(TeacherDigestError, match="sha256"):
        unpack_parts(_split_zip(tmp_path, tampered), dest, _pin(expected))
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # no temp folder either


def test_a_file_of_another_size_is_refused_before_hashing(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"x" * 10)
    with pytest.raises(TeacherDigestError, match="bytes"):
        verify_pin(tmp_path, Pin("r", "0" * 64, 11))


def test_a_cached_copy_that_changed_on_disk_is_refused(tmp_path, monkeypatch):
    weights = b"pinned weights" * 100
    pin = _pin(weights)
    monkeypatch.setitem(source.PINS, "org/pinned", pin)
    local = tmp_path / "teachers" / "base" / f"org--pinned-{pin.revision[:12]}"
    unpack_parts(_split_zip(tmp_path, weights), local, pin)
    assert source.resolve_teacher("org/pinned", None, tmp_path).path == local
    (local / "model.safetensors").write_bytes(b"X" + weights[1:])
    with pytest.raises(TeacherDigestError):
        source.resolve_teacher("org/pinned", None, tmp_path)
    with pytest.raises(TeacherDigestError, match="pinned to revision"):
        source.resolve_teacher("org/pinned", "another-revision", tmp_path)


@pytest.mark.slow
def test_the_installed_split_packages_hold_the_official_all_mpnet_base_v2(tmp_path):
    """The real packages (requirements/teacher.txt): 438 MB joined, unpacked and verified."""
    if source.installed_parts() is None:
        pytest.skip("the teacher packages are not installed (requirements/teacher.txt)")
    resolved = source.resolve_teacher(source.DEFAULT_TEACHER_ID, None, tmp_path)
    assert resolved.revision == "e8c3b32edf5434bc2275fc9bab85f82640a19130"
    assert (resolved.path / "model.safetensors").stat().st_size == 437_971_872
    assert {"config.json", "tokenizer.json", "vocab.txt"} <= {p.name for p in resolved.path.iterdir()}
    # the second call finds the verified copy and checks it again, without unpacking
    assert source.resolve_teacher(source.DEFAULT_TEACHER_ID, None, tmp_path).path == resolved.path
