"""``make demo``: the weekly retrain through Airflow's REST API, one inspector run, then a summary."""

from __future__ import annotations

import time

import httpx
from config import StackConfig
from services import airflow_url, mlflow_url, runner_url

FINAL = {"success", "failed"}


def _runner(cfg: StackConfig) -> httpx.Client:
    token = cfg.secrets()["api_token"]
    return httpx.Client(base_url=runner_url(cfg), timeout=30, headers={"Authorization": f"Bearer {token}"})


def follow(api, dag_id: str, run_id: str, timeout: float, runner: httpx.Client) -> str:
    """Poll a DAG run to its end, printing task changes and the training job's stage and progress."""
    deadline = time.monotonic() + timeout
    last_tasks: dict = {}
    last_job = None
    started = time.monotonic()
    while time.monotonic() < deadline:
        state = api.run_state(dag_id, run_id)
        tasks = api.task_states(dag_id, run_id)
        if tasks != last_tasks:
            changed = {t: s for t, s in tasks.items() if last_tasks.get(t) != s}
            print(f"   [{time.monotonic() - started:6.0f}s] {dag_id}: {changed}", flush=True)
            last_tasks = tasks
        if dag_id == "weekly_retrain":
            jobs = runner.get("/train", params={"limit": 1}).json().get("jobs", [])
            if jobs:
                job = jobs[0]
                line = (job["state"], job["stage"], round(job["progress"] * 100))
                if line != last_job:
                    print(
                        f"   [{time.monotonic() - started:6.0f}s] training job {job['job_id'][:8]}: "
                        f"{line[0]}, stage {line[1]}, {line[2]}%",
                        flush=True,
                    )
                    last_job = line
        if state in FINAL:
            return state
        time.sleep(5)
    return "timeout"


def run_demo(cfg: StackConfig, api) -> int:
    runner = _runner(cfg)
    conf = cfg.demo_params()
    print(f"==> triggering weekly_retrain through the Airflow REST API (conf {conf})", flush=True)
    run_id = api.trigger("weekly_retrain", conf)
    state = follow(api, "weekly_retrain", run_id, cfg.retrain_timeout_s, runner)
    if state != "success":
        print(
            f"error: weekly_retrain ended {state}; task logs under {cfg.airflow_home / 'logs'}, "
            f"training logs under {cfg.root / 'logs' / 'jobs'}"
        )
        return 1
    print("==> running tweet_inspector once with the replay source", flush=True)
    run_id = api.trigger("tweet_inspector")
    state = follow(api, "tweet_inspector", run_id, 900, runner)
    if state != "success":
        print(f"error: tweet_inspector ended {state}; task logs under {cfg.airflow_home / 'logs'}")
        return 1
    print_summary(cfg, runner)
    print_where_to_look(cfg)
    return 0


def print_summary(cfg: StackConfig, runner: httpx.Client) -> None:
    import psycopg
    from services import start_postgres

    model = runner.get("/model").json()
    metrics = model.get("metrics", {})
    print("\n==> summary")
    nan = float("nan")
    print(
        f"   champion: {model.get('name')} version {model.get('version')} ({model.get('serving')}); "
        f"macro recall {metrics.get('macro_recall', nan):.3f}, macro F1 {metrics.get('macro_f1', nan):.3f}, "
        f"accuracy {metrics.get('accuracy', nan):.3f}"
    )
    with psycopg.connect(start_postgres(cfg)) as conn:
        tweets = conn.execute("SELECT count(*) FROM tweets").fetchone()[0]
        rows = conn.execute(
            "SELECT label, count(*) FROM predictions WHERE task = 'sentiment' AND model_version = %s"
            " GROUP BY label ORDER BY label",
            (str(model.get("version")),),
        ).fetchall()
    total = sum(n for _, n in rows) or 1
    shares = ", ".join(f"{label} {n / total:.0%}" for label, n in rows)
    print(f"   tweets stored: {tweets}; classified by this champion: {sum(n for _, n in rows)} ({shares})")


def print_where_to_look(cfg: StackConfig) -> None:
    secret = cfg.secrets()
    print("\n==> where to look")
    print(f"   Airflow UI      {airflow_url(cfg)}   (login admin / {secret['airflow_password']})")
    print(f"   MLflow UI       {mlflow_url(cfg)}")
    print(f"   ModelRunner     {runner_url(cfg)}/docs   (API token in {cfg.run_dir / 'secrets.json'})")
    print(f"   mail (alerts)   {cfg.mail_dir}/*.eml")
    print(f"   logs            {cfg.log_dir}/  (training jobs: {cfg.log_dir / 'jobs'})")
    print("   stop with       make down;  see what runs: make status")
