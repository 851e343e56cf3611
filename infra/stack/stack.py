"""The local stack without Docker: ``up``, ``down``, ``status`` and ``demo`` (see the README).

Run with the service environment: ``.venv/bin/python infra/stack/stack.py up``. Every process gets
its own session, a pid file under ``$TWEETPULSE_HOME/stack`` and a log under ``$TWEETPULSE_HOME/logs``;
``down`` stops the process groups, then anything else still carrying this stack's environment
marker, then Postgres.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import httpx
from config import StackConfig
from procs import alive, kill_marked, marked_processes, read_pid, start, stop_group
from services import build, start_postgres, stop_postgres

DAGS = ("weekly_retrain", "regression_check", "tweet_inspector")


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


class StackError(RuntimeError):
    pass


def _stack_id(cfg: StackConfig) -> str:
    return str(cfg.root)


def _airflow_migrate(cfg: StackConfig, services) -> None:
    import os
    import subprocess

    env = services["airflow-scheduler"].proc.env
    log = cfg.log_dir / "airflow-db-migrate.log"
    say("migrating the Airflow metadata database")
    with log.open("ab") as out:
        result = subprocess.run(
            [services["airflow-scheduler"].proc.argv[0], "db", "migrate"],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=600,
        )
    if result.returncode:
        raise StackError(f"airflow db migrate failed; read {log}")


def up(cfg: StackConfig, keep_paused: tuple[str, ...] = ()) -> dict:
    cfg.log_dir.mkdir(parents=True, exist_ok=True)
    say(f"starting Postgres + pgvector (data in {cfg.root / 'pgdata'})")
    pg_uri = start_postgres(cfg)
    services = build(cfg, pg_uri)
    if not read_pid(cfg.run_dir, "airflow-scheduler"):
        _airflow_migrate(cfg, services)
    for name, service in services.items():
        pid = start(service.proc, cfg.run_dir, cfg.log_dir, _stack_id(cfg))
        say(f"{name}: pid {pid}, log {cfg.log_dir / (name + '.log')}")
    for name, service in services.items():
        _wait_healthy(cfg, name, service)
    _unpause_dags(cfg, services, keep_paused)
    return services


def _wait_healthy(cfg: StackConfig, name: str, service) -> None:
    deadline = time.monotonic() + cfg.start_timeout_s
    while time.monotonic() < deadline:
        if not read_pid(cfg.run_dir, name):
            raise StackError(f"{name} exited during start-up; read {cfg.log_dir / (name + '.log')}")
        if service.health():
            say(f"{name} is healthy" + (f" at {service.url}" if service.url else ""))
            return
        time.sleep(1)
    raise StackError(
        f"{name} not healthy after {cfg.start_timeout_s:.0f}s; read {cfg.log_dir / (name + '.log')}"
    )


def airflow_api(cfg: StackConfig):
    from airflow_api import AirflowAPI
    from services import airflow_url

    return AirflowAPI(airflow_url(cfg), "admin", cfg.secrets()["airflow_password"])


def _unpause_dags(cfg: StackConfig, services, keep_paused: tuple[str, ...] = ()) -> None:
    api = airflow_api(cfg)
    say("waiting for the DAGs to be parsed")
    api.wait_for_dags(list(DAGS), timeout=cfg.start_timeout_s)
    active = [dag for dag in DAGS if dag not in keep_paused]
    for dag in DAGS:
        if dag in active:
            api.unpause(dag)
        else:
            api.pause(dag)
    say(
        f"DAGs {', '.join(active)} are active" + (f"; {', '.join(keep_paused)} paused" if keep_paused else "")
    )


def down(cfg: StackConfig) -> None:
    names = [p.stem for p in cfg.run_dir.glob("*.pid")] if cfg.run_dir.exists() else []
    # Airflow first (its tasks call the ModelRunner), Postgres last
    order = sorted(names, key=lambda n: (not n.startswith("airflow"), n == "mlflow", n))
    for name in order:
        pid = read_pid(cfg.run_dir, name)
        if pid:
            say(f"stopping {name} (process group {pid})")
            stop_group(pid)
        (cfg.run_dir / f"{name}.pid").unlink(missing_ok=True)
    leftovers = kill_marked(_stack_id(cfg))
    if leftovers:
        say(f"stopped {len(leftovers)} stray process(es) of this stack: {leftovers}")
    stop_postgres(cfg)
    say("stack stopped")


def status(cfg: StackConfig) -> int:
    from services import airflow_url, mlflow_url, runner_url

    urls = {
        "model-runner": f"{runner_url(cfg)}/health/ready",
        "mlflow": f"{mlflow_url(cfg)}/health",
        "airflow-api-server": f"{airflow_url(cfg)}/api/v2/monitor/health",
    }
    # the replicas the stack was started with, whatever TWEETPULSE_STACK_REPLICAS says now
    started = [p for p in cfg.run_dir.glob("model-runner-*.pid") if p.stem.rsplit("-", 1)[-1].isdigit()]
    if started:
        cfg = cfg.model_copy(update={"replicas": max(len(started), 2)})
    if cfg.replicas > 1:
        from balancer import backend_states, replica_names, replica_port, train_port

        urls["balancer"] = f"{runner_url(cfg)}/health/ready"
        urls["model-runner-train"] = f"http://127.0.0.1:{train_port(cfg)}/health/ready"
        for i, name in enumerate(replica_names(cfg), start=1):
            urls[name] = f"http://127.0.0.1:{replica_port(cfg, i)}/health/ready"
        balanced = backend_states(cfg)
    else:
        balanced = {}
    running = 0
    names = sorted(p.stem for p in cfg.run_dir.glob("*.pid")) if cfg.run_dir.exists() else []
    for name in names:
        pid = read_pid(cfg.run_dir, name)
        state = "running" if pid else "stopped"
        running += bool(pid)
        extra = ""
        if pid and name in urls:
            import httpx

            try:
                answer = httpx.get(urls[name], timeout=3)
                extra = f"  {urls[name]} -> {answer.status_code}"
                is_json = answer.headers.get("content-type") == "application/json"
                if name.startswith("model-runner") and is_json:
                    body = answer.json()
                    served = ", ".join(f"{t}={v or '-'}" for t, v in body.get("models", {}).items())
                    extra += f"  role={body.get('role')} serves {served or 'nothing'}"
            except (httpx.HTTPError, ValueError) as exc:
                extra = f"  {urls[name]} -> {type(exc).__name__}"
            if name in balanced:
                extra += f"  balancer: {balanced[name]}"
        print(f"{name:<24} {state:<8} {pid or '':<8}{extra}")
    pg = cfg.root / "pgdata" / "postmaster.pid"
    pg_pid = int(pg.read_text().split()[0]) if pg.exists() else None
    print(f"{'postgres':<24} {'running' if pg_pid and alive(pg_pid) else 'stopped':<8} {pg_pid or ''}")
    strays = [
        p for p in marked_processes(_stack_id(cfg)) if p not in {read_pid(cfg.run_dir, n) for n in names}
    ]
    print(f"processes carrying this stack's marker: {len(strays) + running}")
    return 0 if running else 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stack", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "demo"])
    args = parser.parse_args(argv)
    cfg = StackConfig()
    try:
        if args.command == "up":
            up(cfg)
            from demo import print_where_to_look

            print_where_to_look(cfg)
        elif args.command == "down":
            down(cfg)
        elif args.command == "status":
            return status(cfg)
        else:
            from demo import run_demo

            # the scheduled run that activation starts and the demo's own run share one job (409), so
            # both must train with the demo's adapters: the ModelRunner's default for this stack
            adapters = cfg.demo_params().get("adapters")
            if adapters and "TWEETPULSE_ADAPTERS" not in os.environ:
                os.environ["TWEETPULSE_ADAPTERS"] = ",".join(adapters)
            # the inspector waits for the demo's champion: a scheduled run before it would mail an
            # empty daily digest (the digest goes out once a day)
            up(cfg, keep_paused=("tweet_inspector",))
            return run_demo(cfg, airflow_api(cfg))
    except (StackError, RuntimeError, httpx.HTTPError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(f"logs: {cfg.log_dir}; stop everything with `make down`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
