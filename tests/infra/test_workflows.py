"""The GitHub Actions workflows: actionlint (with shellcheck on every `run:`), the rules this project
keeps (pinned actions, least permissions, concurrency), and the Space sync the deploy workflow runs,
against a local stand-in for the Hub so the real huggingface_hub client makes every call.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from model_runner.settings import Settings

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if not found:
        pytest.fail(f"{name} is missing: it comes with requirements/dev.lock (make install)")
    return found


def actionlint(*files: Path) -> subprocess.CompletedProcess:
    # shellcheck pinned to the one from dev.lock, so CI and laptops report the same; pyflakes off
    # (no `shell: python` steps, and the Python the workflows run is linted by ruff as files)
    cmd = [tool("actionlint"), f"-shellcheck={tool('shellcheck')}", "-pyflakes=", "-no-color", "-oneline"]
    return subprocess.run([*cmd, *map(str, files)], capture_output=True, text=True, cwd=REPO)


def load(name: str) -> dict:
    workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads the key `on` as True
    return workflow


def steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


# --- actionlint -------------------------------------------------------------------------------------
def test_workflows_pass_actionlint():
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} >= {"ci.yml", "deploy-space.yml"}
    result = actionlint(*files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_fails_on_a_broken_workflow(tmp_path):
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(
        "on: push\n"
        "jobs:\n"
        "  test:\n"
        "    runs-on: ubuntu-24.04\n"
        "    steps:\n"
        "      - uses: actions/checkout@v5\n"
        "        with:\n"
        "          no-such-input: true\n"
        "      - run: echo ${{ github.no_such_property }}\n"
        "      - run: rm -rf $TARGET/*\n"
        "    timeout-minutes: soon\n"
    )
    result = actionlint(broken)
    assert result.returncode == 1, result.stdout + result.stderr
    # one finding per planted error: unknown action input, unknown context property, unquoted
    # variable in a script (shellcheck), a string where a number belongs
    for line, kind in ((8, "[action]"), (9, "[expression]"), (10, "SC2086"), (11, "[syntax-check]")):
        assert re.search(rf"broken\.yml:{line}:\d+: .*{re.escape(kind)}", result.stdout), (
            f"line {line} ({kind}) not reported:\n{result.stdout}"
        )


def test_actionlint_passes_a_correct_workflow(tmp_path):
    """The failure above is about the errors in it, not a linter that rejects everything."""
    good = tmp_path / "good.yml"
    good.write_text(
        "on: push\npermissions:\n  contents: read\njobs:\n  test:\n    runs-on: ubuntu-24.04\n"
        '    steps:\n      - run: echo "$GITHUB_SHA"\n'
    )
    result = actionlint(good)
    assert result.returncode == 0, result.stdout + result.stderr


# --- project rules ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ci.yml", "deploy-space.yml"])
def test_workflow_hygiene(name):
    workflow = load(name)
    assert workflow["permissions"] == {"contents": "read"}, "least privilege: read the code, nothing more"
    assert workflow["concurrency"]["group"]
    for job_name, job in workflow["jobs"].items():
        assert job.get("timeout-minutes"), f"{job_name} may hang for 6 hours"
        assert "permissions" not in job, f"{job_name} widens the permissions"
    text = (WORKFLOWS / name).read_text()
    uses = re.findall(r"uses:\s*(\S+)(.*)", text)
    assert uses
    for action, comment in uses:
        # a tag can be moved to other code; a commit cannot
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", action), f"{action} is not pinned to a commit"
        assert re.search(r"# v\d+\.\d+\.\d+", comment), f"{action} lacks its version comment"
    for step in steps(workflow):
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False, "the token must not stay in .git/config"


def test_ci_runs_lint_and_tests_with_a_lock_keyed_pip_cache():
    workflow = load("ci.yml")
    assert {"pull_request", "push"} <= set(workflow["on"])
    test_steps = workflow["jobs"]["test"]["steps"]
    setup = next(s for s in test_steps if s.get("uses", "").startswith("actions/setup-python@"))
    assert setup["with"]["python-version"] == "3.11"
    assert setup["with"]["cache"] == "pip"
    assert "requirements/*.lock" in setup["with"]["cache-dependency-path"]
    commands = "\n".join(s.get("run", "") for s in test_steps)
    for command in ("make install", "make lint", "make test-service test-long test-airflow"):
        assert command in commands
    assert "download.pytorch.org/whl/cpu" in commands, "PyPI's torch is the CUDA build"
    makefile = (REPO / "Makefile").read_text()
    for target in ("install", "lint", "test-service", "test-airflow"):
        assert re.search(rf"^{target}:", makefile, re.M), f"make {target} does not exist"
    compose_steps = "\n".join(s.get("run", "") for s in workflow["jobs"]["compose"]["steps"])
    assert "docker compose up -d --wait" in compose_steps and "docker compose down --volumes" in compose_steps


def test_deploy_space_workflow():
    workflow = load("deploy-space.yml")
    assert workflow["on"]["push"]["branches"] == ["main"]
    assert "workflow_dispatch" in workflow["on"]
    assert workflow["concurrency"]["cancel-in-progress"] is False, "a cancelled sync can leave a half state"
    job = workflow["jobs"]["sync"]
    assert "vars.HF_SPACE_ID" in job["if"]
    sync = next(s for s in job["steps"] if "sync_space.py" in s.get("run", ""))
    assert sync["env"] == {
        "HF_TOKEN": "${{ secrets.HF_TOKEN }}",
        "HF_SPACE_ID": "${{ vars.HF_SPACE_ID }}",
        # the Space serves the model repos the service pushes to (model_source=hub)
        "TWEETPULSE_HUB_REPO_ID": "${{ vars.TWEETPULSE_HUB_REPO_ID }}",
    }
    assert "${{" not in sync["run"], "expressions in run: are script injection; pass them through env"
    # every path the Space is built from triggers a deploy
    paths = set(workflow["on"]["push"]["paths"])
    module = _sync_module()
    for rel in module.SERVICE_PATHS:
        assert rel in paths or f"{rel}/**" in paths, f"a change to {rel} would not be deployed"
    assert {"infra/model-runner.Dockerfile", "infra/space/**"} <= paths


# --- the Space --------------------------------------------------------------------------------------
def _sync_module():
    spec = importlib.util.spec_from_file_location("sync_space", REPO / "infra" / "space" / "sync_space.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _front_matter(readme: str) -> dict:
    assert readme.startswith("---\n")
    return yaml.safe_load(readme[4 : readme.index("\n---\n", 4)])


def test_space_tree_builds_with_the_service_dockerfile(tmp_path):
    module = _sync_module()
    files = module.stage(tmp_path / "space", commit="0123456789abcdef", repository="acme/tweetpulse")
    space = tmp_path / "space"
    assert (space / "Dockerfile").read_bytes() == (REPO / "infra" / "model-runner.Dockerfile").read_bytes()
    # every COPY source of the Dockerfile is in the Space at the same path: the build context is complete
    for line in (space / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert (space / source).exists(), f"the Space lacks {source}"
    assert "model_runner/__init__.py" in files and "model_runner/cli.py" in files
    assert any(f.startswith("model_runner/db/migrations/") and f.endswith(".sql") for f in files)
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    assert not [f for f in files if f.startswith(("tests/", "airflow/", ".env", ".venv"))]

    readme = (space / "README.md").read_text()
    meta = _front_matter(readme)
    assert meta["sdk"] == "docker"
    assert meta["app_port"] == Settings.model_fields["port"].default
    assert re.search(rf"^EXPOSE {meta['app_port']}$", (space / "Dockerfile").read_text(), re.M)
    assert len(meta["short_description"]) <= 60, "the Hub rejects longer short descriptions"
    assert "0123456789abcdef" in readme and "acme/tweetpulse" in readme and "{{" not in readme


class FakeSpaceHub:
    """Just the Hub routes a Space sync calls; records each call and the files of each commit."""

    def __init__(self, token: str, existing: list[str]):
        self.token, self.existing = token, existing
        self.calls: list[tuple[str, str, str | None]] = []
        self.created: dict | None = None
        self.commits: list[dict] = []
        self.url = ""
        app = FastAPI()

        @app.middleware("http")
        async def record(request: Request, call_next):
            self.calls.append((request.method, request.url.path, request.headers.get("authorization")))
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return JSONResponse({"error": "bad token"}, 401)
            return await call_next(request)

        @app.post("/api/repos/create")
        async def create(request: Request):
            self.created = await request.json()
            repo_id = f"{self.created['organization']}/{self.created['name']}"
            return JSONResponse({"url": f"{self.url}/spaces/{repo_id}"}, 409 if self.existing else 200)

        @app.get("/api/spaces/{owner}/{name}/tree/{revision}")
        async def tree(owner: str, name: str, revision: str):
            return [{"type": "file", "path": p, "oid": "0" * 40, "size": 1} for p in self.existing]

        @app.post("/api/validate-yaml")
        async def validate_yaml(request: Request):
            content = (await request.json())["content"]
            return {"errors": [] if _front_matter(content).get("sdk") else ["no sdk"], "warnings": []}

        @app.post("/api/spaces/{owner}/{name}/preupload/{revision}")
        async def preupload(owner: str, name: str, revision: str, request: Request):
            files = (await request.json())["files"]
            return {
                "files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
            }

        @app.post("/api/spaces/{owner}/{name}/commit/{revision}")
        async def commit(owner: str, name: str, revision: str, request: Request):
            lines = [json.loads(line) for line in (await request.body()).splitlines() if line.strip()]
            values = {
                key: [i["value"] for i in lines if i["key"] == key]
                for key in ("header", "file", "deletedFile")
            }
            self.commits.append(
                {
                    "repo": f"{owner}/{name}",
                    "header": values["header"][0],
                    "added": {f["path"]: base64.b64decode(f["content"]) for f in values["file"]},
                    "deleted": [f["path"] for f in values["deletedFile"]],
                }
            )
            return {"commitUrl": f"{self.url}/spaces/{owner}/{name}/commit/{'1' * 40}", "commitOid": "1" * 40}

        self.app = app

    def __enter__(self) -> FakeSpaceHub:
        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "fake hub did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)


@pytest.fixture
def hub_client(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setenv("HF_TOKEN", "hf_spaceTOKEN")


def test_space_sync_replaces_the_tree_in_one_commit(tmp_path, hub_client):
    module = _sync_module()
    folder = tmp_path / "space"
    files = module.stage(folder, commit="f" * 40, repository="acme/tweetpulse")
    existing = ["model_runner/removed_module.py", "Dockerfile", ".gitattributes"]
    with FakeSpaceHub("hf_spaceTOKEN", existing=existing) as hub:
        url = module.sync("acme/tweetpulse-runner", folder, commit="f" * 40, private=True, endpoint=hub.url)

    assert url.endswith("/commit/" + "1" * 40)
    assert hub.created["type"] == "space" and hub.created["sdk"] == "docker"
    assert all(auth == "Bearer hf_spaceTOKEN" for _, _, auth in hub.calls)
    assert len(hub.commits) == 1, "one commit, so the Space never builds a half-synchronised tree"
    commit = hub.commits[0]
    assert commit["repo"] == "acme/tweetpulse-runner"
    assert sorted(commit["added"]) == files
    assert commit["added"]["Dockerfile"] == (REPO / "infra" / "model-runner.Dockerfile").read_bytes()
    assert commit["deleted"] == ["model_runner/removed_module.py"], ".gitattributes stays, stale code goes"
    assert "f" * 12 in commit["header"]["summary"]


def test_space_sync_cli_refuses_without_a_token(monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert _sync_module().main(["--space-id", "acme/tweetpulse-runner"]) == 2
    assert "HF_TOKEN" in capsys.readouterr().err
