"""The one place where settings become objects: database, encoder, stores.

The CLI and the HTTP app both build their parts here, lazily, so that a command that needs only the
database never loads torch weights.
"""

from __future__ import annotations

from functools import cached_property

from model_runner.db import Database
from model_runner.settings import Settings


class Components:
    def __init__(self, settings: Settings):
        self.settings = settings

    @cached_property
    def db(self) -> Database:
        db = Database.from_settings(self.settings)
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

    def examples(self, task: str):
        from model_runner.store import ExampleStore

        return ExampleStore(self.db, task)
