"""What the local stack runs: commands, environments and health checks, in start order."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from config import REPO, StackConfig
from procs import Proc

VENV = REPO / ".venv" / "bin"
VENV_AF = REPO / ".venv-airflow" / "bin"


@dataclass
class Service:
    proc: Proc
    health: Callable[[], bool]
    url: str | None = None


def http_ok(url: str, expect: tuple[int, ...] = (200,)) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return httpx.get(url, timeout=3).status_code in expect
        except httpx.HTTPError:
            return False

    return check


def tcp_ok(port: int) -> Callable[[], bool]:
    def check() -> bool:
        with socket.socket() as s:
            s.settimeout(2)
            return s.connect_ex(("127.0.0.1", port)) == 0

    return check


def start_postgres(cfg: StackConfig) -> str:
    """Start (or find) the embedded Postgres + pgvector; it outlives this process until ``down``."""
    import pgserver
    import psycopg

    pgdata = cfg.root / "pgdata"
    pgdata.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    uri = server.get_uri()
    with psycopg.connect(uri, autocommit=True) as conn:
        existing = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
        for name in ("mlflow", "airflow"):
            if name not in existing:
                conn.execute(f"CREATE DATABASE {name}")
    return uri


def stop_postgres(cfg: StackConfig) -> None:
    import os
    import subprocess

    from pgserver._commands import pg_ctl

    pgdata = cfg.root / "pgdata"
    if (pgdata / "postmaster.pid").exists():
        # as root, pgserver runs Postgres as its own system user, and pg_ctl must run as that user too
        user = "pgserver" if os.geteuid() == 0 else None
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=60)
        except subprocess.SubprocessError as exc:
            print(f"warning: could not stop Postgres in {pgdata}: {exc}")


def _db(uri: str, name: str, driver: str) -> str:
    """The same server, another database, in SQLAlchemy form (``postgresql+driver://...``)."""
    base, _, query = uri.partition("?")
    base = base.rsplit("/", 1)[0]
    return f"{base.replace('postgresql://', f'postgresql+{driver}://', 1)}/{name}" + (
        f"?{query}" if query else ""
    )


def mlflow_url(cfg: StackConfig) -> str:
    return f"http://127.0.0.1:{cfg.mlflow_port}"


def runner_url(cfg: StackConfig) -> str:
    return f"http://127.0.0.1:{cfg.runner_port}"


def airflow_url(cfg: StackConfig) -> str:
    return f"http://127.0.0.1:{cfg.airflow_port}"


def airflow_env(cfg: StackConfig, pg_uri: str, sec: dict[str, str]) -> dict[str, str]:
    home = cfg.airflow_home
    home.mkdir(parents=True, exist_ok=True)
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({"admin": sec["airflow_password"]}))
    passwords.chmod(0o600)
    runner = {
        "conn_type": "http",
        "host": "127.0.0.1",
        "port": cfg.runner_port,
        "schema": "http",
        "password": sec["api_token"],
    }
    smtp = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": cfg.smtp_port,
        "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "tweetpulse@localhost"},
    }
    return {
        "PATH": f"{VENV_AF}:/usr/bin:/bin",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "airflow" / "dags"),
        # the triggerer imports tweetpulse_dags.triggers by classpath and, unlike the dag-processor and
        # the workers, does not put the DAGs folder on sys.path itself
        "PYTHONPATH": str(REPO / "airflow" / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{airflow_url(cfg)}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": _db(pg_uri, "airflow", "psycopg2"),
        "AIRFLOW__API__PORT": str(cfg.airflow_port),
        "AIRFLOW__API__BASE_URL": airflow_url(cfg),
        "AIRFLOW__API__SECRET_KEY": sec["api_secret_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": sec["jwt_secret"],
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "60",
        "AIRFLOW_CONN_MODEL_RUNNER": json.dumps(runner),
        "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps(smtp),
        **airflow_variables(cfg),
    }


def airflow_variables(cfg: StackConfig) -> dict[str, str]:
    """DAG Variables of the local stack (see airflow/README.md for every Variable and default)."""
    replay = REPO / "airflow" / "dags" / "tweetpulse_dags" / "data" / "replay_tweets.jsonl"
    return {
        "AIRFLOW_VAR_TWEETPULSE_REPLAY_FILE": str(replay),
        "AIRFLOW_VAR_TWEETPULSE_ALERT_TO": "ml-team@localhost",
        "AIRFLOW_VAR_TWEETPULSE_MLFLOW_UI_URL": mlflow_url(cfg),
    }


def _runner(name: str, port: int, role: str, env: dict[str, str]) -> Service:
    return Service(
        Proc(
            name,
            [str(VENV / "model-runner"), "serve", "--port", str(port), "--role", role],
            env={**env, "TWEETPULSE_PORT": str(port), "TWEETPULSE_ROLE": role},
            cwd=REPO,
        ),
        http_ok(f"http://127.0.0.1:{port}/health/live"),
        f"http://127.0.0.1:{port}/docs",
    )


def model_runners(cfg: StackConfig, env: dict[str, str]) -> dict[str, Service]:
    """One process that serves and trains, or (``replicas`` > 1) the replicas, the train process and
    HAProxy in front of the replicas on the ModelRunner's port (infra/stack/balancer.py)."""
    if cfg.replicas == 1:
        return {"model-runner": _runner("model-runner", cfg.runner_port, "all", env)}
    from balancer import haproxy_binary, replica_names, replica_port, train_port, write_config

    haproxy = haproxy_binary()
    if haproxy is None:
        raise RuntimeError(
            f"TWEETPULSE_STACK_REPLICAS={cfg.replicas} needs HAProxy: `make haproxy`"
            " (Debian's package: apt-get install haproxy)"
        )
    services = {
        name: _runner(name, replica_port(cfg, i), "serve", env)
        for i, name in enumerate(replica_names(cfg), start=1)
    }
    services["model-runner-train"] = _runner("model-runner-train", train_port(cfg), "train", env)
    services["balancer"] = Service(
        Proc("balancer", [haproxy, "-db", "-f", str(write_config(cfg))]),
        http_ok(f"{runner_url(cfg)}/health/live"),
        f"{runner_url(cfg)}/docs",
    )
    return services


def build(cfg: StackConfig, pg_uri: str) -> dict[str, Service]:
    sec = cfg.secrets()
    cfg.mail_dir.mkdir(parents=True, exist_ok=True)
    runner_env = {
        "DATABASE_URL": pg_uri,
        "TWEETPULSE_HOME": str(cfg.root),
        "TWEETPULSE_PORT": str(cfg.runner_port),
        "TWEETPULSE_MLFLOW_TRACKING_URI": mlflow_url(cfg),
        "TWEETPULSE_MLFLOW_UI_URL": mlflow_url(cfg),
        "TWEETPULSE_API_TOKEN": sec["api_token"],
    }
    af_env = airflow_env(cfg, pg_uri, sec)
    af = str(VENV_AF / "airflow")
    return {
        "smtp": Service(
            Proc(
                "smtp",
                [
                    sys.executable,
                    str(Path(__file__).with_name("smtp_sink.py")),
                    "--port",
                    str(cfg.smtp_port),
                    "--dir",
                    str(cfg.mail_dir),
                ],
            ),
            tcp_ok(cfg.smtp_port),
        ),
        "mlflow": Service(
            Proc(
                "mlflow",
                [
                    str(VENV / "mlflow"),
                    "server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(cfg.mlflow_port),
                    "--workers",
                    "1",
                    "--backend-store-uri",
                    _db(pg_uri, "mlflow", "psycopg"),
                    "--artifacts-destination",
                    (cfg.root / "mlartifacts").as_uri(),
                    "--serve-artifacts",
                ],
            ),
            http_ok(f"{mlflow_url(cfg)}/health"),
            mlflow_url(cfg),
        ),
        **model_runners(cfg, runner_env),
        "airflow-api-server": Service(
            Proc(
                "airflow-api-server",
                [af, "api-server", "--host", "127.0.0.1", "--port", str(cfg.airflow_port)],
                env=af_env,
            ),
            http_ok(f"{airflow_url(cfg)}/api/v2/monitor/health"),
            airflow_url(cfg),
        ),
        "airflow-scheduler": Service(Proc("airflow-scheduler", [af, "scheduler"], env=af_env), lambda: True),
        "airflow-dag-processor": Service(
            Proc("airflow-dag-processor", [af, "dag-processor"], env=af_env), lambda: True
        ),
        "airflow-triggerer": Service(Proc("airflow-triggerer", [af, "triggerer"], env=af_env), lambda: True),
    }
