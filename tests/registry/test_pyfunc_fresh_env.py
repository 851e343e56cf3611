"""The registered champion works for an MLflow user who has nothing of this project installed.

A new virtual environment gets only the model's own ``requirements.txt`` (real PyPI pins; the code
ships with the model). There, ``mlflow.pyfunc.load_model("models:/<name>@champion")`` and
``mlflow models serve`` answer with the labels the model gives in this process.

Building that environment installs torch, transformers and mlflow (about two minutes here, from the
local wheels): tests/fresh_venvs.py builds and caches it, keyed by the requirements and the
interpreter, and ``make test`` starts that build in the background while the suite runs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.fresh_venvs import pyfunc_venv
from tests.registry.conftest import SENTIMENT, TEXTS, active_run, new_registry

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

SERVE_READY_TIMEOUT_S = 240
SERVE_ARGS = ("--env-manager", "local", "-h", "127.0.0.1", "-p")

# ~50 tweets of different shapes: the model's labels on them are compared one by one.
_WORDS = ["love", "hate", "meh", "great", "awful", "update", "service", "phone", "today", "never"]
PROBE_TEXTS = [*TEXTS, "", "   ", "😀 so happy!!!", "@user http://t.co/abc #fail"] + [
    f"{a} the {b}, {c} {'!' * (i % 3)}"
    for i, (a, b, c) in enumerate(
        (_WORDS[i % 10], _WORDS[(3 * i + 1) % 10], _WORDS[(7 * i + 2) % 10]) for i in range(41)
    )
]


def _child_env(store_uri: str, venv: Path) -> dict[str, str]:
    """The user's shell: the venv first on PATH (``mlflow models serve`` starts ``uvicorn`` from it),
    no PYTHONPATH and no MLflow settings of this process, the test store as tracking server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MLFLOW_", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_TRACKING_URI"] = store_uri
    return env


@pytest.fixture(scope="module")
def champion(mlflow_store, saved_models, tmp_path_factory):
    """sentiment model a, registered in a training run and promoted: ``models:/<name>@champion``."""
    registry = new_registry(mlflow_store)
    with active_run(mlflow_store):
        info = registry.log_and_register(
            saved_models["sentiment_a"].path, task="sentiment", input_example=TEXTS[:3]
        )
    registry.promote("sentiment", info.version)
    folder = registry.download("sentiment", dst=tmp_path_factory.mktemp("champion"))
    model_root = next(p for p in [folder, *folder.parents] if (p / "MLmodel").is_file())
    return f"models:/{info.name}@champion", model_root / "requirements.txt"


@pytest.fixture(scope="module")
def fresh_venv(champion) -> Path:
    """A new venv with only the champion's requirements.txt installed (cached across runs)."""
    # the venv holds exactly what the model's requirements.txt lists (make test prebuilds it from
    # the same pins in the background; see tests/fresh_venvs.py)
    return pyfunc_venv(champion[1].read_text().splitlines())


@pytest.fixture(scope="module")
def expected(saved_models) -> tuple[list[str], np.ndarray]:
    proba = saved_models["sentiment_a"].model.predict_proba(PROBE_TEXTS)
    return [SENTIMENT[i] for i in proba.argmax(axis=1)], proba


def test_load_model_in_a_fresh_venv_answers_like_the_trained_model(
    champion, fresh_venv, expected, mlflow_store, tmp_path
):
    uri = champion[0]
    script = textwrap.dedent(
        f"""
        import importlib.util, json, sys
        # nothing of this project is installed here: its code comes with the model
        assert importlib.util.find_spec("model_runner") is None, "model_runner is importable"
        import mlflow
        import pandas as pd
        model = mlflow.pyfunc.load_model({uri!r})
        out = model.predict(pd.DataFrame({{"text": json.load(open(sys.argv[1]))}}))
        import model_runner
        rows = out.to_dict(orient="records")
        json.dump({{"code": model_runner.__file__, "rows": rows}}, open(sys.argv[2], "w"))
        """
    )
    (tmp_path / "texts.json").write_text(json.dumps(PROBE_TEXTS))
    done = subprocess.run(
        [str(fresh_venv / "bin" / "python"), "-c", script, "texts.json", "out.json"],
        cwd=tmp_path,  # not the repository: its model_runner folder must not be importable
        env=_child_env(mlflow_store.uri, fresh_venv),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads((tmp_path / "out.json").read_text())
    assert "/code/model_runner/" in result["code"]  # the copy shipped with the model
    labels, proba = expected
    assert [row["label"] for row in result["rows"]] == labels
    scores = np.array([[row[f"score_{c}"] for c in SENTIMENT] for row in result["rows"]])
    np.testing.assert_allclose(scores, proba, atol=1e-5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: dict, timeout: float = 120) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def test_mlflow_models_serve_answers_with_the_champions_labels(
    champion, fresh_venv, expected, mlflow_store, tmp_path
):
    port = _free_port()
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [str(fresh_venv / "bin" / "mlflow"), "models", "serve", "-m", champion[0], *SERVE_ARGS, str(port)],
        cwd=tmp_path,
        env=_child_env(mlflow_store.uri, fresh_venv),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: uvicorn and its worker stop together
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVE_READY_TIMEOUT_S
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-4000:]
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-4000:]
            time.sleep(1)
        answer = _post(
            f"{base}/invocations",
            {"dataframe_split": {"columns": ["text"], "data": [[t] for t in PROBE_TEXTS]}},
        )
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
        log.close()
    labels, proba = expected
    rows = answer["predictions"]
    assert [row["label"] for row in rows] == labels
    np.testing.assert_allclose([[row[f"score_{c}"] for c in SENTIMENT] for row in rows], proba, atol=1e-5)
