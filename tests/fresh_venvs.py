"""The clean virtual environments of the "outside" tests, built once and cached.

Two tests load a model the way a user without tweetpulse would: the portable export through
optimum (``requirements/outside-client.txt``) and the MLflow pyfunc with nothing but its own
``requirements.txt``. Each venv takes one to two minutes to install on a fresh 2-core machine, so
``make test`` starts ``python -m tests.fresh_venvs`` in the background while the suite runs, and the
tests wait for it (a file lock) instead of building their own. Both are cached under
``$TWEETPULSE_OUTSIDE_VENV_CACHE`` (default ``~/.cache/tweetpulse``), keyed by what they install, and
reused only when their install finished.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUTSIDE_REQUIREMENTS = REPO / "requirements" / "outside-client.txt"
READY = ".ready"
INSTALL_TIMEOUT_S = 1500


def cache_root() -> Path:
    root = Path(os.environ.get("TWEETPULSE_OUTSIDE_VENV_CACHE") or Path.home() / ".cache" / "tweetpulse")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _build(name: str, key_text: str, steps: list[list[str]]) -> Path:
    """A venv under the cache named ``name-<digest of key_text>``, built by ``steps`` (pip arguments)."""
    digest = hashlib.sha256(f"{sys.version}\n{key_text}".encode()).hexdigest()[:16]
    root = cache_root()
    venv = root / f"{name}-{digest}"
    with open(root / f"{name}-{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent build (make test's prebuild) finishes first
        if (venv / READY).is_file():
            return venv
        for stale in root.glob(f"{name}-*"):  # venvs of earlier requirements: a few GB each
            if stale.is_dir() and stale != venv:
                shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(venv, ignore_errors=True)
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        # --no-compile: byte-compiling torch's thousands of modules would take most of the minutes
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        for step in steps:
            done = subprocess.run(
                [*pip, "--no-compile", *step], capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S
            )
            if done.returncode != 0:
                noise = "Location 'file:"  # this machine's pip mirrors warn on every package
                tail = "\n".join(
                    line for line in (done.stdout + done.stderr).splitlines() if noise not in line
                )
                raise RuntimeError(f"pip install {' '.join(step)} failed in {venv}:\n{tail[-3000:]}")
        (venv / READY).write_text(f"built in {time.monotonic() - started:.0f}s\n")
    return venv


def outside_client_venv() -> Path:
    """Only ``requirements/outside-client.txt`` (optimum-onnx, transformers, onnxruntime, torch)."""
    text = OUTSIDE_REQUIREMENTS.read_text()
    # torch alone first: the CPU wheel (any other torch request would fetch a CUDA build)
    return _build("outside-client", text, [["torch==2.13.0"], ["-r", str(OUTSIDE_REQUIREMENTS)]])


def pyfunc_venv(requirements: list[str]) -> Path:
    """Only the given requirements: what a registered model's ``requirements.txt`` lists."""
    lines = sorted(r.strip() for r in requirements if r.strip())
    return _build("pyfunc", "\n".join(lines), [list(lines)])


def main() -> int:
    from model_runner.registry.pyfunc import pip_requirements

    for name, build in (
        ("outside-client", outside_client_venv),
        ("pyfunc", lambda: pyfunc_venv(pip_requirements())),
    ):
        started = time.monotonic()
        try:
            print(f"{name}: {build()} ({time.monotonic() - started:.0f}s)", flush=True)
        except Exception as exc:  # the test that needs it builds it again and reports the failure
            print(f"{name}: prebuild failed: {exc}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
