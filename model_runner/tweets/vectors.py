"""Embeddings of inspected tweets, from the same pgvector cache the training uses.

Drift and summaries compute centroids in SQL, so every tweet of the window needs a vector of the
frozen encoder first; only the missing ones are computed (bounded per call to keep requests short).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from model_runner.db import Database
from model_runner.store import EmbeddingStore
from model_runner.tweets.tweets import backfill_text_hashes
from model_runner.tweets.window import SOURCE_FILTER, TWEET_TIME, Window

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderKey:
    encoder_id: str
    revision: str
    dim: int

    @classmethod
    def of(cls, store: EmbeddingStore | VectorSource) -> EncoderKey:
        if isinstance(store, VectorSource):
            return store.key
        return cls(store.encoder.encoder_id, store.encoder.revision, store.encoder.dim)

    @classmethod
    def resolve(cls, encoder_id: str, revision: str | None) -> EncoderKey:
        """The key of an encoder without loading its weights (read-only routes never run torch)."""
        # lazy: importing model_runner.encoder loads torch; read-only routes use this
        from model_runner.encoder.resolve import resolve_model

        resolved = resolve_model(encoder_id, revision)
        config = json.loads((resolved.path / "config.json").read_text())
        return cls(resolved.model_id, resolved.revision, int(config["hidden_size"]))

    def params(self) -> dict:
        return {"enc_id": self.encoder_id, "enc_rev": self.revision}


@dataclass(frozen=True)
class VectorSource:
    """What read-only queries over stored vectors need: the database and the encoder's key."""

    db: Database
    key: EncoderKey


def embedding_join(key: EncoderKey, hash_column: str, alias: str = "e") -> str:
    """JOIN clause reaching this encoder's vector of a text hash (the vector width is a literal)."""
    return (
        f"JOIN embeddings {alias} ON {alias}.text_hash = {hash_column} AND {alias}.dim = {int(key.dim)}"
        f" AND {alias}.encoder_id = %(enc_id)s AND {alias}.encoder_revision = %(enc_rev)s"
    )


def embed_window(
    store: EmbeddingStore, window: Window, *, found_by: str | None = None, limit: int = 5000
) -> int:
    """Compute the vectors missing for tweets of the window; returns how many texts were embedded."""
    db = store.db
    backfill_text_hashes(db)
    key = EncoderKey.of(store)
    with db.connect() as conn:
        rows = conn.execute(
            f"SELECT DISTINCT ON (t.text_hash) t.text FROM tweets t"
            f" LEFT JOIN embeddings e ON e.text_hash = t.text_hash"
            f"  AND e.encoder_id = %(enc_id)s AND e.encoder_revision = %(enc_rev)s"
            f" WHERE e.text_hash IS NULL AND {TWEET_TIME} >= %(since)s AND {TWEET_TIME} < %(until)s"
            f" AND {SOURCE_FILTER} LIMIT %(limit)s",
            {
                **key.params(),
                "since": window.since,
                "until": window.until,
                "found_by": found_by,
                "limit": limit,
            },
        ).fetchall()
    texts = [r[0] for r in rows]
    if texts:
        store.get_or_compute(texts)
        log.info("embedded %d inspected tweets for %s", len(texts), window.to_dict())
    return len(texts)
