"""Background processes of the local stack: started in their own session, found again by pid file and by
a marker in their environment, stopped as whole process groups so nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

MARKER = "TWEETPULSE_STACK_ID"


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None


def pid_file(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.pid"


def read_pid(run_dir: Path, name: str) -> int | None:
    path = pid_file(run_dir, name)
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive for our purposes
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


def start(proc: Proc, run_dir: Path, log_dir: Path, stack_id: str) -> int:
    existing = read_pid(run_dir, proc.name)
    if existing:
        return existing
    log_dir.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **proc.env, MARKER: stack_id}
    with (log_dir / f"{proc.name}.log").open("ab") as log:
        child = subprocess.Popen(
            proc.argv,
            env=env,
            cwd=proc.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    pid_file(run_dir, proc.name).write_text(str(child.pid))
    return child.pid


def stop_group(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM the process group, then SIGKILL what is still there after ``timeout``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + (timeout if sig == signal.SIGTERM else 5)
        while time.monotonic() < deadline and alive(pid):
            time.sleep(0.2)
        if not alive(pid):
            return


def marked_processes(stack_id: str) -> list[int]:
    """Every process whose environment carries this stack's marker, whatever group it moved to."""
    needle = f"{MARKER}={stack_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def kill_marked(stack_id: str, timeout: float = 10.0) -> list[int]:
    pids = marked_processes(stack_id)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.2)
    return pids
