"""The one place where settings become objects: database, encoder, stores.

The CLI and the HTTP app both build their parts here, lazily, so that a command that needs only the
database never loads torch weights.
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
        from model_runner.pipeline.vectors import EncoderKey, VectorSource

        if "encoder" in self.__dict__:
            key = EncoderKey(self.encoder.encoder_id, self.encoder.revision, self.encoder.dim)
        else:
            key = EncoderKey.resolve(self.settings.encoder_id, self.settings.encoder_revision)
        return VectorSource(self.db, key)

    def examples(self, task: str):
        from model_runner.store import ExampleStore

        return ExampleStore(self.db, task)
