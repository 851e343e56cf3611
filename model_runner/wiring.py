"""The one place where settings become objects: database, encoder, stores, registry, MLflow client.

The CLI, the HTTP app and the training worker each build one ``Components`` and take every
collaborator from it, lazily, so that a command that needs only the database never loads torch
weights and nothing else constructs a registry, a job store or an MLflow client.
"""

from __future__ import annotations

from functools import cached_property

from model_runner.db import Database
from model_runner.settings import Settings


class Components:
    def __init__(self, settings: Settings, *, pooled_db: bool = False):
        self.settings = settings
        self._pooled_db = pooled_db  # the long-lived service pools its connections

    @cached_property
    def db(self) -> Database:
        db = Database.from_settings(self.settings, pooled=self._pooled_db)
        db.ensure_schema()
        return db

    @cached_property
    def encoder(self):
        # lazy: each collaborator loads its heavy stack (torch, mlflow, datasets) only when first used
        from model_runner.encoder import FrozenEncoder

        s = self.settings
        return FrozenEncoder(
            s.encoder_id,
            s.encoder_revision,
            device=s.device,
            max_length=s.encoder_max_length,
            batch_size=s.encoder_batch_size,
        )

    @cached_property
    def embeddings(self):
        from model_runner.store import EmbeddingStore

        return EmbeddingStore(self.db, self.encoder, write_batch=self.settings.embed_write_batch)

    @cached_property
    def vectors(self):
        """Database + encoder key for read-only vector queries; reuses the loaded encoder if any."""
        from model_runner.tweets.vectors import EncoderKey, VectorSource

        if "encoder" in self.__dict__:
            key = EncoderKey(self.encoder.encoder_id, self.encoder.revision, self.encoder.dim)
        else:
            key = EncoderKey.resolve(self.settings.encoder_id, self.settings.encoder_revision)
        return VectorSource(self.db, key)

    def _bound_mlflow_http(self) -> None:
        """MLflow's HTTP timeout and retries, from the settings, before any MLflow client exists."""
        from model_runner.registry import apply_http_limits

        s = self.settings
        apply_http_limits(s.mlflow_timeout_s, s.mlflow_max_retries, s.mlflow_backoff_factor)

    @cached_property
    def registry(self):
        """The model registry, with MLflow's HTTP timeout and retries bounded by the settings."""
        from model_runner.registry import ModelRegistry

        self._bound_mlflow_http()
        return ModelRegistry(self.settings.tracking_uri(), name_prefix=self.settings.registry_prefix)

    @cached_property
    def mlflow(self):
        """An MLflow tracking client for this settings' server (runs, tags, experiments)."""
        from mlflow import MlflowClient

        self._bound_mlflow_http()
        return MlflowClient(self.settings.tracking_uri())

    @cached_property
    def jobs(self):
        """The training-job table, with this settings' lease."""
        from model_runner.store.jobs import JobStore

        return JobStore(self.db, lease_s=self.settings.job_lease_s)

    @cached_property
    def teachers(self):
        """Distillation teachers and their cached logits."""
        from model_runner.teacher import TeacherStore

        return TeacherStore(self.db, write_batch=self.settings.embed_write_batch)

    def examples(self, task: str):
        from model_runner.store import ExampleStore

        return ExampleStore(self.db, task)
