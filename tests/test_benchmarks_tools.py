"""Fast checks of the benchmark tools that need neither a GPU nor the peer's venv."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmarks import gpu_check, peer


def test_gpu_check_exits_2_without_cuda(monkeypatch, tmp_path: Path, capsys) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "gpu"), "--quick"]) == 2
    out, err = capsys.readouterr()
    assert gpu_check.NO_CUDA in err
    assert "TWEETPULSE_DEVICE=cuda" in out and "--sample-fraction" in out  # the plan is printed first
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("engine", peer.ENGINES)
def test_peer_binds_loopback_only(engine: str) -> None:
    # infinity binds 0.0.0.0 unless told otherwise: every command line must say 127.0.0.1
    cmd = peer.peer_command(Path("/venv/bin/infinity_emb"), ".", engine, 7997)
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert cmd.count("--host") == 1
    assert cmd[cmd.index("--engine") + 1] == engine
