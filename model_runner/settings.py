"""The one place where tweetpulse reads its configuration.

Every setting comes from the environment with the ``TWEETPULSE_`` prefix (or from a ``.env`` file in
the working directory). ``DATABASE_URL`` is also accepted without the prefix because that is the name
every Postgres tool and platform already uses.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_ENCODER_ID = "sentence-transformers/all-MiniLM-L6-v2"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TWEETPULSE_", env_file=".env", extra="ignore", populate_by_name=True
    )

    # --- storage -------------------------------------------------------------------------------------
    home: Path = Field(
        default=Path(".tweetpulse"),
        description="Project-local folder for the embedded Postgres data, logs and artifacts.",
    )
    database_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("TWEETPULSE_DATABASE_URL", "DATABASE_URL"),
        description="External Postgres (with pgvector) URL; unset starts the embedded pgserver under home.",
    )

    # --- encoder -------------------------------------------------------------------------------------
    encoder_id: str = Field(
        default=DEFAULT_ENCODER_ID,
        description="Frozen base model: a Hub id or a local folder in Hugging Face format.",
    )
    encoder_revision: str | None = Field(
        default=None, description="Hub revision (branch, tag or commit) of the encoder; unset = default."
    )
    encoder_max_length: int = Field(default=128, ge=8, le=512, description="Maximum tokens per text.")
    encoder_batch_size: int = Field(default=64, ge=1, description="Texts per encoder forward pass.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="Torch device; auto picks CUDA when available."
    )

    # --- data ----------------------------------------------------------------------------------------
    tasks_file: Path | None = Field(
        default=None,
        description="TOML file declaring the tasks (data, metric, labels, label map, columns, warm-up,"
        " schedule); unset = the bundled `model_runner/tasks.toml`.",
    )
    task_overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per-deployment changes to declared tasks, JSON: "
        '`{"sentiment": {"data": "/data/tweets.jsonl"}, "emotion": {"warmup": "sentiment"}}`.',
    )
    eval_fraction: float = Field(
        default=0.2, gt=0, lt=1, description="Share held out for evaluation when the data has no eval split."
    )
    seed: int = Field(default=13, description="Seed for splits, sampling and training.")
    embed_write_batch: int = Field(
        default=512, ge=1, description="Embeddings written to Postgres per transaction."
    )

    # --- training ------------------------------------------------------------------------------------
    adapters: str = Field(
        default="linear,mlp,finetune,distill",
        description="Adapters cross-validation chooses from (comma-separated): linear, mlp, lora,"
        " finetune, distill (the fine-tune that also learns from the teacher).",
    )
    cv_folds: int = Field(default=5, ge=2, le=20, description="Stratified k-fold CV folds per candidate.")
    cv_workers: int = Field(
        default=0, ge=0, description="Parallel CV jobs; 0 = one per CPU core (processes) or 2 on a GPU."
    )
    bootstrap_samples: int = Field(
        default=1000, ge=100, description="Bootstrap resamples for confidence intervals."
    )
    gate_tolerance: float = Field(
        default=0.005, ge=0, description="Promote when candidate score >= champion score - tolerance."
    )
    teacher: Literal["auto", "off", "refit"] = Field(
        default="auto",
        description="The distillation teacher. auto: fine-tune it when the task has none yet (or its data"
        " changed a lot), else reuse it and its cached logits; refit: fine-tune it again now; off: no"
        " teacher (the distill adapter then trains on labels only).",
    )
    teacher_id: str = Field(
        default="sentence-transformers/all-mpnet-base-v2",
        description="The teacher's base encoder: the default resolves offline from its digest-checked"
        " PyPI split packages; a local folder or another Hub id works too.",
    )
    teacher_revision: str | None = Field(
        default=None, description="Hub revision of a teacher_id that is not the pinned default."
    )
    teacher_refit_new_share: float = Field(
        default=0.3,
        gt=0,
        le=1,
        description="auto refits the teacher when this share of the training texts is new to it.",
    )
    distill_unlabelled_max: int = Field(
        default=5000,
        ge=0,
        description="Most stored inspector tweets (unlabelled) the student also learns from, newest first.",
    )
    quant_max_drop: float = Field(
        default=0.01, ge=0, description="Largest metric drop accepted from int8 quantization."
    )
    quant_min_agreement: float = Field(
        default=0.97, ge=0, le=1, description="Smallest int8-vs-fp32 label agreement accepted."
    )

    # --- MLflow --------------------------------------------------------------------------------------
    mlflow_tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking server or store; unset = SQLite store + artifacts under home.",
    )
    mlflow_experiment: str = Field(default="tweetpulse", description="MLflow experiment of training runs.")
    registry_prefix: str = Field(
        default="tweetpulse", description="Registered models are named <prefix>-<task>."
    )

    mlflow_ui_url: str | None = Field(
        default=None,
        description="Public URL of the MLflow UI, used for run links in job results and alerts.",
    )

    # --- HTTP service --------------------------------------------------------------------------------
    host: str = Field(default="127.0.0.1", description="Address `model-runner serve` binds to.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port `model-runner serve` listens on.")
    api_token: SecretStr | None = Field(
        default=None,
        description="Admin bearer token: every route but health (writes need it); unset = one is generated"
        " into <home>/api-token (mode 0600).",
    )
    inference_token: SecretStr | None = Field(
        default=None,
        description="Read bearer token: GET routes, /inference and /similar (the admin token works too);"
        " unset = reads take only the admin token.",
    )
    tasks: str = Field(
        default="",
        description="Tasks whose champions the service loads and serves (comma-separated); empty = every"
        " declared task.",
    )
    max_messages: int = Field(default=256, ge=1, description="Messages per /inference request (413 above).")
    max_message_chars: int = Field(
        default=2000, ge=16, description="Characters kept per message; longer ones are truncated and flagged."
    )
    max_body_bytes: int = Field(
        default=1_000_000, ge=1024, description="Largest request body in bytes (413 above)."
    )
    batch_max_size: int = Field(
        default=256,
        ge=1,
        description="Micro-batch: most texts gathered from concurrent requests; they are sorted by token"
        " count and run in forward passes of batch_pass_size.",
    )
    batch_pass_size: int = Field(
        default=32,
        ge=1,
        description="Micro-batch: texts per forward pass (32 measured fastest on a 2-core CPU: small"
        " passes keep activations in cache and pad less).",
    )
    batch_max_wait_ms: float = Field(
        default=0.0,
        ge=0,
        description="Micro-batch: extra wait for more requests once the inference thread is free; 0 = none"
        " (requests that arrive during a forward pass form the next batch anyway).",
    )
    inference_cache_size: int = Field(
        default=20_000,
        ge=0,
        description="Results kept per task for texts the served model has already classified (LRU,"
        " emptied on reload; retweets repeat verbatim); 0 = off. Repeats within a batch always run once.",
    )
    serving_runtime: Literal[
        "auto", "torch", "onnxruntime", "torch-int8", "onnxruntime-int8", "torch-bf16", "cuda"
    ] = Field(
        default="auto",
        description="How a loaded model is served. auto: measure at load every runtime this machine"
        " supports (fp32 torch and ONNX Runtime, int8, bf16 where the CPU has AMX/AVX512-BF16, CUDA on a"
        " GPU), keep those within the accuracy gate, serve the fastest. A name forces that runtime (it"
        " must still pass the gate, else fp32 serves).",
    )
    runtime_probe_texts: int = Field(
        default=256,
        ge=16,
        description="Evaluation texts each candidate runtime answers at load (agreement and speed).",
    )
    inference_threads: int = Field(
        default=0, ge=0, description="Threads for serving (torch and ONNX Runtime); 0 = all cores."
    )
    inference_threads_while_training: int = Field(
        default=1,
        ge=0,
        description="Torch serving threads while this service's training worker runs; 0 = unchanged."
        " One thread keeps single-message p99 ~20 ms instead of ~0.5 s: torch's OpenMP passes stall when"
        " a thread's core is taken by the worker.",
    )
    reload_poll_s: float | None = Field(
        default=None,
        ge=0,
        description="Poll the registry for a new champion every N seconds; 0 = off; unset = 30 with"
        " `role=serve` (the bound within which a replica converges when it missed a NOTIFY), off otherwise.",
    )
    review_threshold: float = Field(
        default=0.6, ge=0, le=1, description="Inspected tweets whose top score is below go to review."
    )
    job_poll_s: float = Field(default=1.0, gt=0, description="How often the service checks a training job.")
    train_worker_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="Niceness added to the training worker process (and its CV pool): on shared cores the"
        " serving threads keep priority, so /inference stays fast while a model trains.",
    )

    # --- Hugging Face Hub ----------------------------------------------------------------------------
    hub_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("TWEETPULSE_HUB_TOKEN", "HF_TOKEN"),
        description="Hub write token; with hub_repo_id set, promoted models are pushed.",
    )
    hub_repo_id: str | None = Field(
        default=None, description="Hub model repo per task, e.g. `acme/tweetpulse-{task}`; unset = no push."
    )
    hub_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("TWEETPULSE_HUB_ENDPOINT", "HF_ENDPOINT"),
        description="Hub API endpoint; unset = https://huggingface.co.",
    )
    hub_private: bool = Field(default=True, description="Create the Hub repo as private.")
    hub_timeout_s: float = Field(default=60.0, gt=0, description="Timeout per Hub HTTP call.")
    hub_retries: int = Field(
        default=3, ge=0, le=10, description="Retries of a failed Hub push or read (backoff)."
    )
    model_source: Literal["registry", "hub"] = Field(
        default="registry",
        description="Where the service takes each task's model: `registry` = the MLflow champion;"
        " `hub` = the model last pushed to `hub_repo_id` (no MLflow or data needed, e.g. a Space).",
    )
    hub_revision: str | None = Field(
        default=None,
        description="With `model_source=hub`: the revision to serve, one for all tasks (`v3`) or per task"
        " (`sentiment=1a2b3c,emotion=main`); unset = the latest commit of the main branch.",
    )
    hub_poll_s: float = Field(
        default=60.0,
        ge=0,
        description="With `model_source=hub`: how often the service checks the repo for a new revision"
        " and hot-reloads it (0 = only at start-up).",
    )

    # --- training jobs: leases, heartbeats, reconciliation (hardening) -------------------------------
    job_lease_s: float = Field(
        default=60.0,
        ge=4,
        description="Training job lease: the worker renews it every lease/4 seconds; a job whose worker has"
        " not renewed it for this long is failed by whichever process notices (service, POST /train).",
    )
    job_db_retry_max_s: float = Field(
        default=30.0,
        gt=0,
        description="Longest pause between retries when a job watcher or worker meets a database error"
        " (exponential backoff from 0.5 s); the watcher retries until the database answers.",
    )
    job_sweep_s: float = Field(
        default=15.0,
        gt=0,
        description="How often the service fails jobs whose lease expired and retries a pending reload.",
    )
    job_recover_mode: Literal["adopt", "kill"] = Field(
        default="adopt",
        description="At start-up, a training worker of this host that outlived the service is adopted"
        " (watched again; the job goes on) or killed (its process group; the job fails as interrupted).",
    )
    train_worker_stop_grace_s: float = Field(
        default=10.0,
        ge=0,
        description="On shutdown the training worker's process group gets SIGTERM, then SIGKILL after this.",
    )
    # --- roles and the job queue (past one machine) -----------------------------------------------
    role: Literal["all", "serve", "train"] = Field(
        default="all",
        description="What this process does: `all` serves and trains (one machine); `serve` answers"
        " requests and queues POST /train jobs in Postgres, never trains; `train` claims queued jobs"
        " (FOR UPDATE SKIP LOCKED, with a lease) and runs them, serving no model.",
    )
    job_queue_timeout_s: float = Field(
        default=3600.0,
        ge=10,
        description="A job queued for a `train` process (`role=serve`) that none claims within this fails.",
    )
    job_claim_poll_s: float = Field(
        default=2.0,
        gt=0,
        description="How often a `train`/`all` process looks for queued jobs (besides Postgres NOTIFY).",
    )

    # --- served traffic: what /inference answered, sampled for drift/class-share/collapse checks -----
    served_sample_rate: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="Share of /inference predictions recorded in Postgres (text hash, task, model version,"
        " label, confidence, time); 0 = none.",
    )
    served_store_text: bool = Field(
        default=False, description="Record the text itself with each sampled prediction (else only its hash)."
    )
    served_retention_days: float = Field(
        default=30.0, gt=0, description="Sampled predictions older than this are deleted."
    )

    train_data_roots: str = Field(
        default="",
        description="Folders (comma-separated) whose files POST /train may name as `dataset`; empty = the"
        " shared datasets folder ../shared/datasets, the folders holding the declared tasks' data,"
        " and home. Symlinks and `..` are resolved first; Hub dataset ids are always allowed.",
    )

    # --- registry and MLflow robustness (hardening) --------------------------------------------------
    mlflow_timeout_s: int = Field(
        default=10,
        ge=1,
        description="Timeout of one HTTP request to a remote MLflow server (connect, and each wait for"
        " bytes); sets MLFLOW_HTTP_REQUEST_TIMEOUT for this process and its training worker.",
    )
    mlflow_max_retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description="Retries of a failed or timed-out MLflow HTTP request (MLFLOW_HTTP_REQUEST_MAX_RETRIES).",
    )
    mlflow_backoff_factor: int = Field(
        default=1,
        ge=0,
        le=120,
        description="Backoff between MLflow HTTP retries: factor x 1, 2, 4... seconds"
        " (MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR).",
    )
    reload_timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="Deadline of one model reload (registry, download, load, ONNX export, canaries); past it"
        " the reload fails, the served model stays and a late result is discarded.",
    )

    # --- edge, backpressure, database (hardening) ----------------------------------------------------
    max_queued_texts: int = Field(
        default=4096,
        ge=0,
        description="Admission: most texts waiting for the model per task; /inference answers 429 with"
        " Retry-After beyond it (0 = unbounded).",
    )
    max_queue_wait_s: float = Field(
        default=5.0,
        ge=0,
        description="Admission: /inference answers 429 when the texts already waiting would take longer"
        " than this at the measured throughput (0 = off).",
    )
    request_deadline_s: float = Field(
        default=30.0,
        gt=0,
        description="Longest an /inference request waits for its answer; past it 503 with Retry-After"
        " and its texts leave the queue.",
    )
    public_docs: bool = Field(
        default=True, description="/docs, /redoc and /openapi.json answer without a token."
    )
    public_metrics: bool = Field(default=False, description="/metrics answers without a token.")
    db_connect_timeout_s: float = Field(
        default=5.0, gt=0, description="Timeout for opening a Postgres connection."
    )
    db_statement_timeout_s: float = Field(
        default=60.0, ge=0, description="Postgres statement_timeout of the service's connections; 0 = none."
    )
    db_pool_size: int = Field(default=8, ge=1, description="Most pooled Postgres connections per process.")
    startup_retry_max_s: float = Field(
        default=30.0, gt=0, description="Start-up steps retry with exponential backoff up to this delay."
    )
    shutdown_grace_s: float = Field(
        default=20.0,
        ge=0,
        description="On SIGTERM: readiness turns 503 and in-flight requests get this long to finish.",
    )

    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        home = self.resolved_home()
        home.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{home / 'mlflow.db'}"

    def artifact_root(self) -> str:
        return (self.resolved_home() / "mlartifacts").as_uri()

    def task_list(self) -> list[str]:
        """The tasks this process serves: ``tasks`` if set, else every task the tasks file declares.

        Reading it validates the tasks file, so a service with a broken declaration does not start."""
        from model_runner.tasks import TaskConfigError, declared_tasks  # tasks.py imports Settings

        declared = list(declared_tasks(self))
        listed = [t.strip() for t in self.tasks.split(",") if t.strip()]
        undeclared = [t for t in listed if t not in declared]
        if undeclared:
            raise TaskConfigError(
                f"TWEETPULSE_TASKS names undeclared task(s) {', '.join(undeclared)};"
                f" declared: {', '.join(declared)}"
            )
        return listed or declared

    def effective_reload_poll_s(self) -> float:
        """``reload_poll_s``, or its role default when unset (30 s for serving replicas, else off)."""
        if self.reload_poll_s is not None:
            return self.reload_poll_s
        return 30.0 if self.role == "serve" else 0.0

    def resolved_home(self) -> Path:
        return self.home.expanduser().resolve()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
