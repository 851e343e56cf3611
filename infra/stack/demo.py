"""``make demo``: the weekly retrain through Airflow's REST API, one inspector run, then a summary."""

from __future__ import annotations

import json
import time
from email import policy
from email.parser import BytesParser
from pathlib import Path

import httpx
from config import StackConfig
from services import airflow_url, mlflow_url, runner_url

FINAL = {"success", "failed"}
JOB_LINE_S = 15  # the demo prints a running job's progress at most this often within a stage


def _runner(cfg: StackConfig) -> httpx.Client:
    token = cfg.secrets()["api_token"]
    return httpx.Client(base_url=runner_url(cfg), timeout=30, headers={"Authorization": f"Bearer {token}"})


def follow(api, dag_id: str, run_id: str, timeout: float, runner: httpx.Client) -> str:
    """Poll a DAG run to its end, printing task changes and the training job's stage and progress."""
    deadline = time.monotonic() + timeout
    last_tasks: dict = {}
    last_job = None
    last_printed = 0.0
    started = time.monotonic()
    stale = _finished_job(runner) if dag_id == "weekly_retrain" else None  # an earlier run's job
    while time.monotonic() < deadline:
        state = api.run_state(dag_id, run_id)
        tasks = api.task_states(dag_id, run_id)
        if tasks != last_tasks:
            changed = {t: s for t, s in tasks.items() if last_tasks.get(t) != s}
            print(f"   [{time.monotonic() - started:6.0f}s] {dag_id}: {changed}", flush=True)
            last_tasks = tasks
        if dag_id == "weekly_retrain":
            jobs = runner.get("/train", params={"limit": 1}).json().get("jobs", [])
            if jobs and jobs[0]["job_id"] != stale:
                job = jobs[0]
                line = (job["state"], job["stage"], round(job["progress"] * 100))
                # a new state or stage at once; progress within a stage (the epochs and batches of a
                # fit) at most every JOB_LINE_S seconds
                changed = last_job is None or line[:2] != last_job[:2]
                due = line != last_job and time.monotonic() - last_printed >= JOB_LINE_S
                if changed or due:
                    print(f"   [{time.monotonic() - started:6.0f}s] {job_line(job)}", flush=True)
                    last_job, last_printed = line, time.monotonic()
        if state in FINAL:
            return state
        time.sleep(5)
    return "timeout"


def job_line(job: dict) -> str:
    """A training job as the demo prints it: state, stage, percent and where in the stage it is."""
    text = (
        f"training job {job['job_id'][:8]}: {job['state']}, stage {job['stage']}, "
        f"{round(job['progress'] * 100)}%"
    )
    detail = job.get("detail")  # e.g. "epoch 2/3, batch 120/400, loss 0.412" during a fit
    return f"{text} ({detail})" if detail else text


def _finished_job(runner: httpx.Client) -> str | None:
    jobs = runner.get("/train", params={"limit": 1}).json().get("jobs", [])
    return jobs[0]["job_id"] if jobs and jobs[0]["state"] not in ("queued", "running") else None


def run_demo(cfg: StackConfig, api) -> int:
    runner = _runner(cfg)
    started = time.time()
    conf = cfg.demo_params()
    print(f"==> triggering weekly_retrain through the Airflow REST API (conf {json.dumps(conf)})", flush=True)
    print(f"   {trained_what(conf.get('adapters'), cfg)}", flush=True)
    run_id = api.trigger("weekly_retrain", conf)
    state = follow(api, "weekly_retrain", run_id, cfg.retrain_timeout_s, runner)
    retrain_minutes = (time.time() - started) / 60
    if state != "success":
        print(
            f"error: weekly_retrain ended {state}; task logs under {cfg.airflow_home / 'logs'}, "
            f"training logs under {cfg.root / 'logs' / 'jobs'}"
        )
        return 1
    inspector_conf = cfg.inspector_params()
    print(
        f"==> running tweet_inspector once on the replay tweets (conf {json.dumps(inspector_conf)}: "
        "the daily digest goes out now)",
        flush=True,
    )
    api.unpause("tweet_inspector")  # kept paused until there is a champion (stack.py demo)
    # Unpausing lets the scheduler start the hourly run at once: let it finish first, so that the two
    # runs do not race for the day's one digest (the first to get there would send it half-filled).
    scheduled = _scheduled_run(api, "tweet_inspector", wait_s=20)
    if scheduled:
        print(f"   the scheduler started {scheduled} on unpausing; following it first", flush=True)
        follow(api, "tweet_inspector", scheduled, 900, runner)
    run_id = api.trigger("tweet_inspector", inspector_conf)
    state = follow(api, "tweet_inspector", run_id, 900, runner)
    if state != "success":
        print(f"error: tweet_inspector ended {state}; task logs under {cfg.airflow_home / 'logs'}")
        return 1
    digest = _xcom(api, "tweet_inspector", run_id, "daily_digest")
    print_summary(cfg, runner, conf.get("adapters"), retrain_minutes)
    found = print_mail(cfg, started, digest)
    print_where_to_look(cfg)
    print(f"\n==> demo finished in {(time.time() - started) / 60:.1f} min after the stack was up")
    if not found:
        print(f"error: no mail reached {cfg.mail_dir}; read {cfg.log_dir / 'smtp.log'} and the task logs")
        return 1
    return 0


def _xcom(api, dag_id: str, run_id: str, task_id: str):
    """A task's return value, or None when the API does not give it (only used for the summary)."""
    try:
        return api.xcom(dag_id, run_id, task_id)
    except (httpx.HTTPError, ValueError):  # the summary goes on without it
        return None


def _names(adapters) -> str:
    return ", ".join(adapters)


def trained_what(adapters: list[str] | None, cfg: StackConfig) -> str:
    """One line saying what this retrain trains: the quick heads or the full default."""
    adapters = list(adapters or cfg.full_adapter_list())
    if {"finetune", "lora", "distill"} & set(adapters):
        return (
            f"full training: cross-validates {_names(adapters)} (fine-tunes the encoder); this takes a while"
        )
    return (
        f"quick demo: cross-validates heads ({_names(adapters)}) on the frozen encoder's cached embeddings, "
        "no fine-tuning (TWEETPULSE_DEMO_FULL=1 trains the full default)"
    )


def quality_note(
    adapters: list[str] | None, adapter: str | None, minutes: float, cfg: StackConfig
) -> list[str]:
    """What the champion is, and for a quick demo how to get the full model and what it reaches."""
    adapters = list(adapters or cfg.full_adapter_list())
    full = _names(cfg.full_adapter_list())
    if {"finetune", "lora", "distill"} & set(adapters):
        return [f"full training ({_names(adapters)}): retrain took {minutes:.1f} min; chosen: {adapter}"]
    conf = json.dumps({"adapters": cfg.full_adapter_list()})
    return [
        f"quick demo: heads ({_names(adapters)}) on a frozen encoder, retrain took {minutes:.1f} min; "
        f"chosen: {adapter}. Not the product's best:",
        f"the full default ({full}: fine-tunes the encoder) reaches macro recall "
        f"~{cfg.full_macro_recall:.2f} on these held-out tweets;",
        "it takes longer (about 12 min of training alone on 2 CPU cores, more inside the running stack):",
        "     make demo TWEETPULSE_DEMO_FULL=1",
        f"  or trigger weekly_retrain in the Airflow UI with conf {conf}",
    ]


def _scheduled_run(api, dag_id: str, wait_s: float) -> str | None:
    """The scheduled run the scheduler creates when a DAG is unpaused, if it creates one in time."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        for run in api.runs(dag_id):
            if run.get("run_type") == "scheduled" and run.get("state") not in FINAL:
                return run["dag_run_id"]
        time.sleep(2)
    return None


def print_summary(
    cfg: StackConfig, runner: httpx.Client, adapters: list[str] | None = None, minutes: float = float("nan")
) -> None:
    import psycopg
    from services import start_postgres

    model = runner.get("/model").json()
    metrics = model.get("metrics", {})
    print("\n==> summary")
    nan = float("nan")
    print(
        f"   champion: {model.get('name')} version {model.get('version')} ({model.get('serving')}, "
        f"adapter {model.get('adapter')}); on held-out tweets: "
        f"macro recall {metrics.get('macro_recall', nan):.3f}, macro F1 {metrics.get('macro_f1', nan):.3f}, "
        f"accuracy {metrics.get('accuracy', nan):.3f}"
    )
    for line in quality_note(adapters, model.get("adapter"), minutes, cfg):
        print(f"   {line}")
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


def mails(mail_dir: Path) -> list[Path]:
    """The mailbox's .eml files, oldest first."""
    return (
        sorted(mail_dir.glob("*.eml"), key=lambda p: (p.stat().st_mtime, p.name)) if mail_dir.is_dir() else []
    )


def subject(path: Path) -> str:
    with path.open("rb") as fh:
        message = BytesParser(policy=policy.default).parse(fh, headersonly=True)
    return str(message.get("Subject", "(no subject)"))


def mail_lines(found: list[Path], since: float, digest=None, shown: int = 5) -> list[str]:
    """The summary's mail section: the newest mails first, those of this run marked new."""
    if not found:
        return [f"no mail yet (the digest task said: {digest})" if digest else "no mail yet"]
    new = [p for p in found if p.stat().st_mtime >= since]
    head = f"{len(found)} in the mailbox, {len(new)} from this run"
    if digest:
        head += f" (daily digest: {digest})"
    lines = [head + ":"]
    for path in list(reversed(found))[:shown]:
        lines.append(f"  {'new' if path in new else 'old'}  {path}")
        lines.append(f"        {subject(path)}")
    if len(found) > shown:
        lines.append(f"  ... and {len(found) - shown} older")
    return lines


def print_mail(cfg: StackConfig, since: float, digest=None) -> list[Path]:
    found = mails(cfg.mail_dir)
    print("\n==> mail (the SMTP sink keeps every message as an .eml file)")
    for line in mail_lines(found, since, digest):
        print(f"   {line}")
    return found


def print_where_to_look(cfg: StackConfig) -> None:
    secret = cfg.secrets()
    print("\n==> where to look")
    print(f"   Airflow UI      {airflow_url(cfg)}   (login admin / {secret['airflow_password']})")
    print(f"   MLflow UI       {mlflow_url(cfg)}")
    print(f"   ModelRunner     {runner_url(cfg)}/docs   (API token in {cfg.run_dir / 'secrets.json'})")
    if cfg.replicas > 1:
        from balancer import stats_port

        print(
            f"                   HAProxy in front of {cfg.replicas} serving replicas and one train process;"
            f" its page: http://127.0.0.1:{stats_port(cfg)}/"
        )
    print(f"   mail (alerts)   {cfg.mail_dir}/*.eml")
    print(f"   logs            {cfg.log_dir}/  (training jobs: {cfg.log_dir / 'jobs'})")
    print("   stop with       make down;  see what runs: make status")
