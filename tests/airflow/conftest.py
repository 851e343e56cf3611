"""Real components for the DAG tests: Airflow (temp home, SQLite metadata, ``dag.test()``), the
ModelRunner (``.venv`` subprocess with its own embedded Postgres + pgvector and a tiny champion) and an
aiosmtpd SMTP sink on loopback. Airflow reads its configuration at import, so the environment is set
before anything imports it.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "airflow" / "dags"
SERVICE_PYTHON = REPO / ".venv" / "bin" / "python"
TOKEN = "airflow-test-token-0123456789"
_TMP = Path(tempfile.mkdtemp(prefix="tp-airflow-"))

os.environ.update(
    {
        "AIRFLOW_HOME": str(_TMP / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # as an operator would have them: unpaused, so an Asset event queues its consumer's run
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_TMP / 'airflow' / 'airflow.db'}",
        "AIRFLOW_VAR_TWEETPULSE_ALERT_TO": "mlops@example.com",
    }
)
(_TMP / "airflow").mkdir()
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)  # also after a collect-only or aborted run
sys.path.insert(0, str(DAGS))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- SMTP --------------------------------------------------------------------------------------------
@dataclass
class Mailbox:
    messages: list[Message] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd handler hook
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    def keys(self) -> list[str]:
        return [m["X-Tweetpulse-Alert-Key"] for m in self.messages]

    def subjects(self) -> list[str]:
        return [m["Subject"] for m in self.messages]

    @staticmethod
    def body(message: Message) -> str:
        part = next(p for p in message.walk() if p.get_content_type() == "text/html")
        return part.get_payload(decode=True).decode()


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[Mailbox]:
    from aiosmtpd.controller import Controller

    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    os.environ["AIRFLOW_CONN_SMTP_DEFAULT"] = json.dumps(
        {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": controller.port,
            "extra": {
                "disable_tls": True,
                "disable_ssl": True,
                "from_email": "tweetpulse@localhost",
                "retry_limit": 0,
            },
        }
    )
    yield box
    controller.stop()


@pytest.fixture
def mailbox(smtp_sink) -> Mailbox:
    smtp_sink.messages.clear()
    return smtp_sink


# --- ModelRunner -------------------------------------------------------------------------------------
@dataclass
class Runner:
    url: str
    home: Path
    env: dict[str, str]
    database_url: str

    def fixture(self, *args: str) -> dict:
        """Run tests/airflow/runner_fixture.py in the service environment."""
        out = subprocess.run(
            [
                str(SERVICE_PYTHON),
                str(Path(__file__).with_name("runner_fixture.py")),
                *args,
                "--home",
                str(self.home),
            ],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"runner_fixture {args} failed:\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, headers={"Authorization": f"Bearer {TOKEN}"})

    def sql(self, query: str, *args) -> list[tuple]:
        import psycopg2

        with psycopg2.connect(self.database_url) as conn, conn.cursor() as cur:
            cur.execute(query, args)
            return cur.fetchall()


def _service_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWEETPULSE_", "AIRFLOW"))}
    env.pop("DATABASE_URL", None)
    env.update(
        {
            "TWEETPULSE_HOME": str(home),
            "TWEETPULSE_API_TOKEN": TOKEN,
            "TWEETPULSE_ENCODER_ID": str(home / "tiny-bert"),
            "TWEETPULSE_ENCODER_MAX_LENGTH": "32",
            "TWEETPULSE_SENTIMENT_DATA": str(home / "data"),
            "TWEETPULSE_ADAPTERS": "linear",
            "TWEETPULSE_CV_FOLDS": "2",
            "TWEETPULSE_CV_WORKERS": "1",
            "TWEETPULSE_BOOTSTRAP_SAMPLES": "200",
            "TWEETPULSE_DEVICE": "cpu",
            "TWEETPULSE_INFERENCE_THREADS": "1",
            "TWEETPULSE_JOB_POLL_S": "0.2",
            "TWEETPULSE_MLFLOW_UI_URL": "http://mlflow.test:5000",
            "OMP_NUM_THREADS": "1",
        }
    )
    return env


def _stop_embedded_postgres(pgdata: Path) -> None:
    """pgserver stops its Postgres when the last registered process exits, but worker processes that
    leave through os._exit never deregister: stop it ourselves (SIGINT = fast shutdown)."""
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return
    try:
        os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)
    except (ProcessLookupError, ValueError):
        return
    deadline = time.monotonic() + 30
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)


@pytest.fixture(scope="session")
def runner() -> Iterator[Runner]:
    if not SERVICE_PYTHON.exists():
        pytest.skip(f"{SERVICE_PYTHON} is missing: run `make install`")
    home = _TMP / "runner"
    home.mkdir()
    env = _service_env(home)
    port = free_port()
    handle = Runner(f"http://127.0.0.1:{port}", home, env, "")
    handle.database_url = handle.fixture("prepare")["database_url"]
    log = (home / "serve.log").open("w")
    proc = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "model-runner"), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(handle.url + "/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "the ModelRunner did not get ready:\n" + (home / "serve.log").read_text()[-3000:]
                )
            time.sleep(0.3)
        os.environ["AIRFLOW_CONN_MODEL_RUNNER"] = json.dumps(
            {"conn_type": "http", "host": "127.0.0.1", "port": port, "schema": "http", "password": TOKEN}
        )
        yield handle
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        _stop_embedded_postgres(home / "pgdata")


# --- Airflow -----------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def airflow_db() -> None:
    from airflow.utils import db

    db.resetdb()


@pytest.fixture(scope="session")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


@pytest.fixture
def variables(airflow_db) -> Iterator[None]:
    """Every test starts without stored Variables (cursors) and leaves none behind."""
    from airflow.models import Variable
    from airflow.utils.session import create_session

    def clear():
        with create_session() as session:
            session.query(Variable).delete()

    clear()
    yield
    clear()


def stored_variable(key: str) -> str | None:
    from airflow.models import Variable

    return Variable.get(key, default_var=None)


def fast(dag, *, retries: int | None = None):
    """A freshly parsed copy of the DAG with short waits: sensor pokes and trigger polls every second;
    optionally no task retries. (A parse, not copy.deepcopy: a deep copy breaks mapped TaskFlow tasks.)"""
    from datetime import timedelta

    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=dag.fileloc).get_dag(dag.dag_id)
    for task in dag.tasks:
        if hasattr(task, "poke_interval"):
            task.poke_interval = 1
        if hasattr(task, "poll_interval"):  # the deferred waits: the trigger polls every second
            task.poll_interval = 1
        task.retry_delay = timedelta(seconds=1)
        if retries is not None:
            task.retries = retries
    return dag


def states(dag_run) -> dict[str, str]:
    return {
        f"{ti.task_id}[{ti.map_index}]" if ti.map_index >= 0 else ti.task_id: str(ti.state)
        for ti in dag_run.get_task_instances()
    }


def xcom(dag_run, task_id: str, key: str = "return_value", map_index: int = -1):
    ti = dag_run.get_task_instance(task_id, map_index=map_index)
    return ti.xcom_pull(task_ids=task_id, key=key, map_indexes=map_index)
