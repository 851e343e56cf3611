"""Static checks of the docker-compose deployment: compose file, env example, Dockerfiles, init SQL,
the balancer's HAProxy config and the monitoring (Prometheus scrape config and rules, Grafana).

No Docker engine runs here; CI's `compose` job builds and starts the stack for real. These tests catch
what can be known without it: structure, pins, health checks, names that must agree across files.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml

from model_runner.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.compose.example"
DOCKERFILES = sorted((REPO / "infra").glob("*.Dockerfile"))
ONE_SHOT = {"airflow-init"}
EXPECTED_SERVICES = {
    "postgres",
    "mlflow",
    "model-runner",
    "model-runner-train",
    "model-runner-gpu",
    "balancer",
    "prometheus",
    "grafana",
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "mailpit",
}
SETTINGS_PORT = Settings.model_fields["port"].default
HAPROXY_CFG = REPO / "infra" / "haproxy" / "compose.cfg"
PROMETHEUS_CFG = REPO / "infra" / "prometheus" / "prometheus.yml"
RULES = REPO / "infra" / "prometheus" / "rules" / "tweetpulse.yml"
GRAFANA = REPO / "infra" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "tweetpulse.json"
RUNNERS = ("model-runner", "model-runner-train", "model-runner-gpu")

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}; $$ is a literal $
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


# --- helpers ----------------------------------------------------------------------------------------
def settings_env_names() -> set[str]:
    """Every environment variable name Settings reads (prefix + field name, or its aliases)."""
    prefix = Settings.model_config["env_prefix"]
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if alias is not None and hasattr(alias, "choices"):
            names.update(str(choice) for choice in alias.choices)
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def referenced_variables(text: str) -> dict[str, str | None]:
    """Variables compose interpolates in ``text``: name -> operator (None, '-', ':-', '?', ':?')."""
    found: dict[str, str | None] = {}
    for match in _VAR.finditer(text):
        name = match.group(1) or match.group(4)
        if name:
            found.setdefault(name, match.group(2))
    return found


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution (the subset docker-compose.yml uses), for tests without Docker."""

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group(1) or match.group(4), match.group(2), match.group(3) or ""
        value = env.get(name)
        if op in (":?", "?") and (value is None or (op == ":?" and value == "")):
            raise KeyError(f"{name}: {arg}")
        if op == ":-" and not value:
            return arg
        if op == "-" and value is None:
            return arg
        return value or ""

    return _VAR.sub(substitute, text)


def env_example_names(text: str) -> tuple[set[str], set[str]]:
    """(names assigned, names only shown commented out) in the env example."""
    assigned = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, re.M))
    commented = set(re.findall(r"^#\s?([A-Z][A-Z0-9_]*)=", text, re.M))
    return assigned, commented - assigned


def filled_env() -> dict[str, str]:
    """The env example with every required secret filled in, as a user's .env would be."""
    assigned, _ = env_example_names(ENV_EXAMPLE.read_text())
    return {name: f"test-{name.lower().replace('_', '-')}" for name in assigned}


def dockerignore_allows(path: str, patterns: list[str]) -> bool:
    """Whether ``path`` (relative, posix) is part of the build context under .dockerignore rules."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip("/")
        if pattern.startswith("**/"):
            tail = pattern[3:]
            hit = any(fnmatch.fnmatchcase(p.split("/")[-1], tail) for p in prefixes)
        else:
            depth = pattern.count("/")  # like Go's filepath.Match: `*` never crosses a `/`
            hit = any(fnmatch.fnmatchcase(p, pattern) and p.count("/") == depth for p in prefixes)
        if hit:
            included = negate
    return included


def dockerfile_copies(dockerfile: Path) -> list[str]:
    """Source paths of COPY/ADD instructions that read from the build context."""
    sources = []
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if not words or words[0].upper() not in ("COPY", "ADD"):
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        if any(w.startswith("--from") for w in words[1:]):
            continue
        sources.extend(args[:-1])
    return sources


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint is missing: it comes with requirements/dev.lock (make install)")
    return found


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def rendered() -> dict:
    """The compose file as Docker would see it with a filled-in .env."""
    return yaml.safe_load(interpolate(COMPOSE_FILE.read_text(), filled_env()))


# --- the compose file -------------------------------------------------------------------------------
def test_compose_file_has_the_stack(compose):
    assert set(compose["services"]) == EXPECTED_SERVICES
    assert compose["services"]["model-runner-gpu"]["profiles"] == ["gpu"]


def test_every_long_running_service_has_a_healthcheck(compose):
    for name, service in compose["services"].items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", f"{name} is a one-shot job and must not restart"
            continue
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name} has no health check"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        if check["test"][1:3] == ["python", "-c"]:
            compile(check["test"][3], f"{name} healthcheck", "exec")  # a typo would fail only at run time
        assert service.get("restart") == "unless-stopped", f"{name} does not come back after a crash"


def test_images_are_pinned(compose):
    for name, service in compose["services"].items():
        image = service["image"]
        if "build" in service:
            # built here; the pins are in the Dockerfile (test_dockerfile_base_images_are_pinned)
            assert image.startswith("tweetpulse/"), f"{name} builds but is named like a registry image"
            continue
        tag = image.partition(":")[2]
        assert tag and tag != "latest", f"{name}: {image} has no pinned tag"
        assert re.search(r"\d+\.\d+\.\d+", tag), f"{name}: {image} is not an exact version"


def test_depends_on_always_waits_for_a_condition(compose):
    services = compose["services"]
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on as a list starts without waiting"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = spec.get("condition")
            assert condition in ("service_healthy", "service_completed_successfully"), (name, target)
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}, which has none"
            else:
                assert target in ONE_SHOT, f"{name} waits for {target} to exit, but it runs forever"


def test_state_lives_in_declared_named_volumes(compose):
    declared = set(compose["volumes"])
    used = set()
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/", "~", "$")):
                continue  # a bind mount
            assert source in declared, f"{name} uses undeclared volume {source}"
            used.add(source)
    assert used == declared, f"declared but unused: {declared - used}"

    def mounts(service: str) -> dict[str, str]:
        return {v.split(":")[1]: v.split(":")[0] for v in compose["services"][service]["volumes"]}

    assert mounts("postgres")["/var/lib/postgresql/data"] in declared
    assert mounts("model-runner")["/var/lib/tweetpulse"] in declared
    assert compose["services"]["model-runner"]["environment"]["TWEETPULSE_HOME"] == "/var/lib/tweetpulse"


def unknown_tweetpulse_names(text: str) -> set[str]:
    return set(re.findall(r"\bTWEETPULSE_[A-Z0-9_]+", text)) - settings_env_names()


def test_tweetpulse_variables_are_real_settings():
    """A TWEETPULSE_* name the service does not read would be silently ignored (extra='ignore')."""
    text = COMPOSE_FILE.read_text() + "\n" + ENV_EXAMPLE.read_text()
    assert "TWEETPULSE_API_TOKEN" in text, "no TWEETPULSE_ variable found: the test would prove nothing"
    unknown = unknown_tweetpulse_names(text)
    assert not unknown, f"not Settings fields: {sorted(unknown)}"


def test_a_misspelt_setting_is_caught():
    # an Airflow Variable that merely contains the prefix is not a setting name
    text = "TWEETPULSE_API_TOKENS: x\n# TWEETPULSE_PORT=8000\nAIRFLOW_VAR_TWEETPULSE_ALERT_TO: y\n"
    assert unknown_tweetpulse_names(text) == {"TWEETPULSE_API_TOKENS"}


def test_model_runner_port_is_the_settings_port(compose, rendered):
    for name in RUNNERS:
        service = rendered["services"][name]
        assert int(service["environment"]["TWEETPULSE_PORT"]) == SETTINGS_PORT
        # replicas publish nothing (several containers cannot bind one host port): the balancer does
        assert "ports" not in service, f"{name} publishes a port; clients go through the balancer"
        assert f"127.0.0.1:{SETTINGS_PORT}/health/live" in " ".join(service["healthcheck"]["test"])
    balancer = rendered["services"]["balancer"]
    assert [p.rsplit(":", 1)[1] for p in balancer["ports"]] == [str(SETTINGS_PORT)]
    cfg = HAPROXY_CFG.read_text()
    assert re.search(rf"^\s*bind :{SETTINGS_PORT}$", cfg, re.M)
    assert re.search(rf"^\s*server-template \w+ \d+ model-runner:{SETTINGS_PORT}$", cfg, re.M)
    dockerfile = (REPO / "infra" / "model-runner.Dockerfile").read_text()
    assert re.search(rf"^EXPOSE {SETTINGS_PORT}$", dockerfile, re.M)
    assert f"TWEETPULSE_PORT={SETTINGS_PORT}" in dockerfile


def test_airflow_connections_point_at_the_services(rendered):
    services = rendered["services"]
    env = filled_env()
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
        environment = services[name]["environment"]
        runner = json.loads(environment["AIRFLOW_CONN_MODEL_RUNNER"])
        assert runner["conn_type"] == "http" and runner["schema"] == "http"
        assert runner["host"] == "balancer" and runner["host"] in services
        assert runner["port"] == SETTINGS_PORT
        assert runner["password"] == env["TWEETPULSE_API_TOKEN"]
        smtp = json.loads(environment["AIRFLOW_CONN_SMTP_DEFAULT"])
        assert smtp["conn_type"] == "smtp" and smtp["host"] == "mailpit" and smtp["port"] == 1025
        assert smtp["extra"]["disable_tls"] is True
        x_api = json.loads(environment["AIRFLOW_CONN_X_API"])
        assert x_api["password"] == env.get("X_BEARER_TOKEN", ""), "no token = the offline replay source"
        assert "@postgres:5432/airflow" in environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert environment["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    # the GPU train process answers to the train service's name (Prometheus finds it there)
    assert "model-runner-train" in services["model-runner-gpu"]["networks"]["default"]["aliases"]
    assert "@postgres:5432/mlflow" in services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]
    assert services["model-runner"]["environment"]["TWEETPULSE_MLFLOW_TRACKING_URI"] == "http://mlflow:5000"


def test_airflow_has_every_connection_the_dags_read(rendered):
    """The connection ids the DAG helpers use (``*_CONN_ID = "..."``) all exist as AIRFLOW_CONN_* here."""
    config = REPO / "airflow" / "dags" / "tweetpulse_dags" / "config.py"
    if not config.exists():
        pytest.skip("the DAG helpers are not in this checkout")
    conn_ids = re.findall(r'^[A-Z_]+_CONN_ID = "([a-z0-9_]+)"', config.read_text(), re.M)
    assert conn_ids, "no connection ids found: the test would prove nothing"
    environment = rendered["services"]["airflow-scheduler"]["environment"]
    missing = [c for c in conn_ids if f"AIRFLOW_CONN_{c.upper()}" not in environment]
    assert not missing, f"connections the DAGs read but compose does not define: {missing}"


def test_interpolation_refuses_a_missing_secret():
    """Compose stops on an empty required secret; so does the test renderer the checks above rely on."""
    env = filled_env()
    env["TWEETPULSE_API_TOKEN"] = ""
    with pytest.raises(KeyError, match="TWEETPULSE_API_TOKEN"):
        interpolate(COMPOSE_FILE.read_text(), env)


def test_gpu_profile_reserves_an_nvidia_gpu(compose):
    service = compose["services"]["model-runner-gpu"]
    device = service["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert service["environment"]["TWEETPULSE_DEVICE"] == "cuda"
    assert service["environment"]["TWEETPULSE_ROLE"] == "train"
    assert "download.pytorch.org/whl/cu" in service["build"]["args"]["TORCH_INDEX_URL"]


def test_env_example_documents_every_variable(compose):
    text = COMPOSE_FILE.read_text()
    referenced = referenced_variables(text)
    assigned, commented = env_example_names(ENV_EXAMPLE.read_text())
    documented = assigned | commented
    missing = set(referenced) - documented
    assert not missing, f"used in docker-compose.yml, not in {ENV_EXAMPLE.name}: {sorted(missing)}"
    unused = documented - set(referenced) - settings_env_names()
    assert not unused, f"in {ENV_EXAMPLE.name} but read by nothing: {sorted(unused)}"
    required = {name for name, op in referenced.items() if op in (":?", "?")}
    # a required secret is an empty assignment: compose refuses to start until the user fills it in
    assert required <= assigned, f"required but commented out: {sorted(required - assigned)}"
    for line in ENV_EXAMPLE.read_text().splitlines():
        if re.match(r"^[A-Z][A-Z0-9_]*=", line):
            assert line.endswith("="), f"a value in the example, not a placeholder: {line}"


# compose interpolates from the process environment before .env: nothing from this shell may leak in
CLEAN_ENV = {"PATH": "/usr/bin:/bin"}


def compose_cli() -> list[str]:
    """The standalone Docker Compose binary from dev.lock; `docker compose config` needs no engine."""
    found = shutil.which("docker-compose", path=str(Path(sys.executable).parent))
    if not found:
        pytest.fail("docker-compose is missing: it comes with requirements/dev.lock (make install)")
    return [found]


@pytest.mark.parametrize("profile", [[], ["--profile", "gpu"]], ids=["default", "gpu"])
def test_docker_compose_accepts_the_file(tmp_path, profile):
    """Compose's own parser, schema and interpolation, with a .env made from the example."""
    shutil.copy(COMPOSE_FILE, tmp_path / "docker-compose.yml")
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in filled_env().items()))
    result = subprocess.run(
        [*compose_cli(), *profile, "-f", str(tmp_path / "docker-compose.yml"), "config", "--format", "json"],
        capture_output=True,
        text=True,
        env=CLEAN_ENV,
    )
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    expected = EXPECTED_SERVICES if profile else EXPECTED_SERVICES - {"model-runner-gpu"}
    assert set(config["services"]) == expected
    runner = config["services"]["model-runner"]["environment"]
    assert runner["TWEETPULSE_API_TOKEN"] == filled_env()["TWEETPULSE_API_TOKEN"]


def test_docker_compose_refuses_a_missing_secret(tmp_path):
    shutil.copy(COMPOSE_FILE, tmp_path / "docker-compose.yml")
    env = {k: v for k, v in filled_env().items() if k != "POSTGRES_PASSWORD"}
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    result = subprocess.run(
        [*compose_cli(), "-f", str(tmp_path / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=CLEAN_ENV,
    )
    assert result.returncode != 0
    assert "set POSTGRES_PASSWORD in .env" in result.stderr


# --- Dockerfiles ------------------------------------------------------------------------------------
def test_dockerfiles_copy_only_what_the_build_context_holds():
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert DOCKERFILES
    for dockerfile in DOCKERFILES:
        for source in dockerfile_copies(dockerfile):
            assert (REPO / source).exists(), f"{dockerfile.name}: COPY {source} does not exist"
            assert dockerignore_allows(source, patterns), f"{dockerfile.name}: {source} is .dockerignored"
            if (REPO / source).is_dir():
                for path in (REPO / source).rglob("*.py"):
                    rel = path.relative_to(REPO).as_posix()
                    assert dockerignore_allows(rel, patterns), f"{rel} is .dockerignored"
    for kept_out in (".env", ".venv/bin/python", ".git/config", ".tweetpulse/pgdata", "tests/conftest.py"):
        assert not dockerignore_allows(kept_out, patterns), f"{kept_out} would be sent to Docker"
    assert not dockerignore_allows("model_runner/__pycache__/cli.cpython-311.pyc", patterns)


def test_dockerfile_base_images_are_pinned():
    lock = {}
    for name in ("service.lock", "airflow.lock"):
        for line in (REPO / "requirements" / name).read_text().split():
            package, version = line.split("==")
            lock[package.lower()] = version
    runner = (REPO / "infra" / "model-runner.Dockerfile").read_text()
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}\n", runner)
    mlflow = (REPO / "infra" / "mlflow.Dockerfile").read_text()
    assert f"ARG MLFLOW_IMAGE=ghcr.io/mlflow/mlflow:v{lock['mlflow']}\n" in mlflow
    airflow = (REPO / "infra" / "airflow.Dockerfile").read_text()
    assert f"ARG AIRFLOW_IMAGE=apache/airflow:slim-{lock['apache-airflow']}-python3.11\n" in airflow
    for dockerfile in DOCKERFILES:
        for line in dockerfile.read_text().splitlines():
            if line.startswith("FROM "):
                assert line.split()[1].startswith("${"), f"{dockerfile.name}: base image not from its ARG"


def test_images_run_as_an_unprivileged_user():
    for dockerfile in DOCKERFILES:
        users = re.findall(r"^USER (\S+)$", dockerfile.read_text(), re.M)
        assert users, f"{dockerfile.name} never leaves root"
        assert users[-1].split(":")[0] not in ("0", "root"), dockerfile.name


def test_model_runner_image_is_multi_stage_with_cpu_torch():
    text = (REPO / "infra" / "model-runner.Dockerfile").read_text()
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\} AS builder$", text, re.M)
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\} AS runtime$", text, re.M)
    assert "COPY --from=builder /opt/venv /opt/venv" in text
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in text
    assert "-r requirements/service.lock" in text


def test_dockerfiles_pass_hadolint():
    result = subprocess.run([hadolint(), *map(str, DOCKERFILES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_airflow_init_script_passes_shellcheck():
    scripts = sorted((REPO / "infra" / "airflow").glob("*.sh"))
    assert scripts
    shellcheck = shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    if not shellcheck:
        pytest.fail("shellcheck is missing: it comes with requirements/dev.lock (make install)")
    result = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fails_on_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /src && pip install flask\nCMD python app.py\n")
    result = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True)
    assert result.returncode != 0
    for rule in ("DL3007", "DL3013", "DL3003", "DL3025"):
        assert rule in result.stdout, f"{rule} not reported:\n{result.stdout}"


# --- Postgres initialisation ------------------------------------------------------------------------
def test_init_sql_runs_on_postgres_with_pgvector(pg_server, database_url):
    """init.sql as the postgres image runs it: connected to POSTGRES_DB, as the superuser.

    The session server is shared, so the databases get a unique suffix and are dropped afterwards.
    """
    sql = (REPO / "infra" / "postgres" / "init.sql").read_text()
    assert "./infra/postgres/init.sql:/docker-entrypoint-initdb.d/" in COMPOSE_FILE.read_text()
    statements = [s.strip() for s in re.sub(r"--[^\n]*", "", sql).split(";") if s.strip()]
    created = [m.group(1) for s in statements if (m := re.fullmatch(r"CREATE DATABASE (\w+)", s))]
    assert sorted(created) == ["airflow", "mlflow"]
    suffix = f"_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            for statement in statements:  # CREATE DATABASE cannot run inside a transaction block
                if statement.startswith("CREATE DATABASE "):
                    statement += suffix
                conn.execute(statement)
            assert conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone()
            names = {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}
        assert {f"{name}{suffix}" for name in created} <= names
    finally:
        with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:
            for name in created:
                conn.execute(f"DROP DATABASE IF EXISTS {name}{suffix}")


# --- scale-out: serve replicas, the train process, the balancer --------------------------------------
def test_serving_scales_out_behind_the_balancer_and_training_runs_apart(compose, rendered):
    services = rendered["services"]
    runner = services["model-runner"]
    assert runner["environment"]["TWEETPULSE_ROLE"] == "serve"
    assert int(runner["deploy"]["replicas"]) >= 2
    assert services["model-runner-train"]["environment"]["TWEETPULSE_ROLE"] == "train"
    assert "deploy" not in services["model-runner-train"], "one train process: jobs are claimed one at a time"
    for name in RUNNERS:  # one database, one registry, one home for every ModelRunner process
        env = services[name]["environment"]
        assert "@postgres:5432/" in env["DATABASE_URL"] and env["TWEETPULSE_MLFLOW_TRACKING_URI"]
    balancer = services["balancer"]
    assert balancer["image"].startswith("haproxy:")
    assert (
        "./infra/haproxy/compose.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"
        in compose["services"]["balancer"]["volumes"]
    )
    assert balancer["depends_on"]["model-runner"]["condition"] == "service_healthy"
    assert "/balancer/health" in " ".join(balancer["healthcheck"]["test"])
    assert re.search(r"^\s*monitor-uri /balancer/health$", HAPROXY_CFG.read_text(), re.M)


def haproxy_sections(text: str) -> dict[str, list[str]]:
    """``"backend ready_replicas" -> [its lines]``, comments and blank lines left out."""
    sections: dict[str, list[str]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not line[0].isspace():
            current = line.strip()
            sections[current] = []
        elif current is not None:
            sections[current].append(line.strip())
    return sections


def test_haproxy_checks_readiness_and_retries_on_another_replica():
    sections = haproxy_sections(HAPROXY_CFG.read_text())
    defaults = sections["defaults"]
    retry_on = next(line for line in defaults if line.startswith("retry-on "))
    # a refused connection, a replica that died mid-request, a replica answering 503 (draining, loading)
    assert {"conn-failure", "empty-response", "503"} <= set(retry_on.split()[1:])
    assert any(line.startswith("option redispatch") for line in defaults), "retry on another replica"
    assert "option http-buffer-request" in defaults, "L7 retries replay only a buffered request body"
    assert int(next(line.split()[1] for line in defaults if line.startswith("retries "))) >= 2
    ready = sections["backend ready_replicas"]
    assert "http-check send meth GET uri /health/ready" in ready and "http-check expect status 200" in ready
    live = sections["backend live_replicas"]
    assert "http-check send meth GET uri /health/live" in live
    for backend in (ready, live):
        assert "option httpchk" in backend
        assert any("resolvers docker" in line and " check" in f" {line}" for line in backend)
    # with no ready replica (no champion yet), requests still reach a live one: POST /train must
    frontend = sections["frontend model_runner"]
    assert "use_backend ready_replicas if { nbsrv(ready_replicas) gt 0 }" in frontend
    assert "default_backend live_replicas" in frontend
    assert "nameserver dns 127.0.0.11:53" in sections["resolvers docker"]


def test_haproxy_accepts_its_config():
    haproxy = shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if Path(p).exists()), None
    )
    if haproxy is None:
        pytest.skip("haproxy is not installed (Debian package haproxy)")
    result = subprocess.run([haproxy, "-c", "-f", str(HAPROXY_CFG)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --- monitoring: Prometheus and Grafana --------------------------------------------------------------
def test_prometheus_scrapes_every_replica_and_the_train_process(compose, rendered):
    service = compose["services"]["prometheus"]
    assert service["image"].startswith("prom/prometheus:")
    mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
    assert mounts["/etc/prometheus/prometheus.yml"] == "./infra/prometheus/prometheus.yml"
    assert mounts["/etc/prometheus/rules"] == "./infra/prometheus/rules"
    config = yaml.safe_load(PROMETHEUS_CFG.read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name in ("model-runner", "model-runner-train"):
        job = jobs[name]
        assert job["dns_sd_configs"][0]["names"] == [name] and name in rendered["services"]
        assert job["dns_sd_configs"][0]["port"] == SETTINGS_PORT
        # /metrics needs a token: the file the container's entrypoint writes from the environment
        token_file = job["authorization"]["credentials_file"]
        assert token_file in " ".join(service["command"])
        assert any(t.startswith(str(Path(token_file).parent)) for t in service["tmpfs"])
    env = rendered["services"]["prometheus"]["environment"]
    assert env["ADMIN_TOKEN"] == filled_env()["TWEETPULSE_API_TOKEN"]
    assert jobs["balancer"]["static_configs"][0]["targets"] == ["balancer:8404"]
    assert "bind :8404" in haproxy_sections(HAPROXY_CFG.read_text())["frontend stats"]


def test_alerting_rules_are_prometheus_rule_files():
    rules = yaml.safe_load(RULES.read_text())
    assert set(rules) == {"groups"}
    names = []
    for group in rules["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"} and group["name"] and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, rule
            assert rule["alert"] and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"])
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
            assert rule["expr"].count("{") == rule["expr"].count("}"), rule["alert"]
            assert re.fullmatch(r"\d+[smhd]", rule["for"]), rule["alert"]
            assert rule["labels"]["severity"] in ("page", "warn", "info")
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
            names.append(rule["alert"])
    assert len(names) == len(set(names))
    exprs = " ".join(r["expr"] for g in rules["groups"] for r in g["rules"])
    # what the issue asks to alert on: errors, p99 latency, queue depth, model age, drift
    assert 'status=~"5.."' in exprs and "histogram_quantile(0.99" in exprs
    assert "tweetpulse_training_queue_depth" in exprs
    assert "time() - max by (task) (tweetpulse_served_model_loaded_timestamp_seconds) > 8 * 86400" in exprs
    assert "tweetpulse_served_class_share" in exprs and "tweetpulse_served_class_distance" in exprs


def service_metric_names() -> set[str]:
    """Every sample name the service exposes: its registry, the served-traffic recorder's metrics."""
    from model_runner.monitoring.metrics import ServedMetrics
    from model_runner.service.metrics import ServiceMetrics

    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("_count", "_sum", "_created"),
        "gauge": ("",),
        "info": ("_info",),
    }
    registry = ServiceMetrics().registry
    ServedMetrics(registry)
    names = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    # gauges the lead's role/queue work adds (asserted by name in case they are not registered yet)
    names.update({"tweetpulse_training_queue_depth", "tweetpulse_served_model_loaded_timestamp_seconds"})
    return names


def referenced_metrics(expr: str) -> set[str]:
    return set(re.findall(r"\b((?:tweetpulse|process|python)_[a-zA-Z0-9_]+)\b", expr))


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_rules_and_dashboard_name_only_metrics_the_service_exposes():
    known = service_metric_names()
    rules = yaml.safe_load(RULES.read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]] + dashboard_exprs()
    used = set().union(*(referenced_metrics(e) for e in exprs))
    assert len(used) >= 10, "no metric names found: the test would prove nothing"
    unknown = {n for n in used - known if not n.startswith("process_")}
    assert not unknown, f"not exposed by the service: {sorted(unknown)}"


def test_a_misspelt_metric_is_caught():
    assert referenced_metrics('sum(rate(tweetpulse_http_request_total{route="/x"}[5m]))') - (
        service_metric_names()
    ) == {"tweetpulse_http_request_total"}


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard(compose, rendered):
    service = compose["services"]["grafana"]
    assert service["image"].startswith("grafana/grafana:")
    mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
    assert mounts["/etc/grafana/provisioning"] == "./infra/grafana/provisioning"
    assert mounts["/etc/grafana/dashboards"] == "./infra/grafana/dashboards"
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    source = datasources["datasources"][0]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "tweetpulse.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"
    assert rendered["services"]["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert {p["datasource"]["uid"] for p in panels} == {source["uid"]}
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    exprs = " ".join(dashboard_exprs())
    for wanted in (
        "tweetpulse_http_requests_total",  # request and error rate
        'status=~"5.."',
        "histogram_quantile(0.5",  # p50 and p99 latency
        "histogram_quantile(0.99",
        "tweetpulse_inference_batch_size",
        "tweetpulse_served_class_share",
        "tweetpulse_served_model_info",  # served version per replica
        "tweetpulse_training_queue_depth",
        "tweetpulse_served_model_loaded_timestamp_seconds",  # model age
    ):
        assert wanted in exprs, f"the dashboard does not show {wanted}"
