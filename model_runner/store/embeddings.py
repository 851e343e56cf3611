"""Embedding cache in pgvector: compute a text's vector once per encoder revision, then reuse it.

Rows are keyed by (encoder id, encoder revision, hash of the normalised text), so a different encoder
or revision never reads another's vectors. Writes are ``ON CONFLICT DO NOTHING`` upserts: repeating a
call, or two processes embedding the same texts at once, stores each vector exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import psycopg

from model_runner.db import Database
from model_runner.store.keys import normalise, text_key

log = logging.getLogger(__name__)


def _as_array(value) -> np.ndarray:
    # pgvector's psycopg loader returns a ``Vector`` in newer releases, an ndarray in older ones
    return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value, dtype=np.float32)


class EmbeddingDimensionError(ValueError):
    """A vector does not have the width registered for its encoder."""


class Encoder(Protocol):
    encoder_id: str
    revision: str
    dim: int

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray: ...


@dataclass
class CacheStats:
    requested: int = 0
    unique: int = 0
    cached: int = 0
    computed: int = 0


@dataclass(frozen=True)
class Neighbour:
    text_hash: bytes
    similarity: float


class EmbeddingStore:
    def __init__(self, db: Database, encoder: Encoder, *, write_batch: int = 512):
        self.db = db
        self.encoder = encoder
        self.write_batch = write_batch
        self.last_stats = CacheStats()
        self._registered = False

    @property
    def _key(self) -> tuple[str, str]:
        return self.encoder.encoder_id, self.encoder.revision

    def _register_encoder(self, conn: psycopg.Connection) -> None:
        if self._registered:
            return
        dim = self.encoder.dim
        conn.execute(
            "INSERT INTO encoders (encoder_id, encoder_revision, dim) VALUES (%s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (*self._key, dim),
        )
        (known,) = conn.execute(
            "SELECT dim FROM encoders WHERE encoder_id = %s AND encoder_revision = %s", self._key
        ).fetchone()
        if known != dim:
            raise EmbeddingDimensionError(
                f"encoder {self._key[0]}@{self._key[1]} is registered with dim {known}, not {dim}"
            )
        # One partial HNSW index per width: pgvector indexes need a fixed dimension. The advisory
        # lock keeps two first-time writers from racing on CREATE INDEX.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (dim,))
        conn.execute(
            f"CREATE INDEX IF NOT EXISTS embeddings_hnsw_d{dim} ON embeddings"
            f" USING hnsw ((embedding::vector({dim})) vector_cosine_ops) WHERE dim = {dim}"
        )
        conn.commit()
        self._registered = True

    def lookup(self, conn: psycopg.Connection, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        rows = conn.execute(
            "SELECT text_hash, embedding FROM embeddings"
            " WHERE encoder_id = %s AND encoder_revision = %s AND text_hash = ANY(%s)",
            (*self._key, list(keys)),
        )
        return {bytes(h): _as_array(v) for h, v in rows}

    def put(self, keys: Sequence[bytes], vectors: np.ndarray) -> int:
        """Store vectors under their keys; all-or-nothing, returns how many rows were new."""
        vectors = np.asarray(vectors, dtype=np.float32)
        dim = self.encoder.dim
        if vectors.ndim != 2 or vectors.shape[0] != len(keys) or vectors.shape[1] != dim:
            raise EmbeddingDimensionError(
                f"expected {len(keys)} vectors of dim {dim} for encoder {self._key[0]}, "
                f"got an array of shape {vectors.shape}; nothing was stored"
            )
        if not np.isfinite(vectors).all():
            raise ValueError("refusing to store NaN or infinite embeddings; nothing was stored")
        inserted = 0
        with self.db.connect() as conn:
            self._register_encoder(conn)
            with conn.transaction(), conn.cursor() as cur:
                for start in range(0, len(keys), self.write_batch):
                    chunk = range(start, min(start + self.write_batch, len(keys)))
                    cur.executemany(
                        "INSERT INTO embeddings (encoder_id, encoder_revision, text_hash, dim, embedding)"
                        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        [(*self._key, keys[i], dim, vectors[i]) for i in chunk],
                        returning=False,
                    )
                    inserted += max(cur.rowcount, 0)
        return inserted

    def get_or_compute(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Vectors for ``texts`` (in order): cached ones read, only the missing ones encoded."""
        normalised = [normalise(t) for t in texts]
        keys = [text_key(t) for t in normalised]
        unique: dict[bytes, str] = dict(zip(keys, normalised, strict=True))
        with self.db.connect() as conn:
            self._register_encoder(conn)
            found = self.lookup(conn, list(unique))
        missing = [k for k in unique if k not in found]
        if missing:
            computed = self.encoder.encode([unique[k] for k in missing], progress=progress)
            self.put(missing, computed)
            found.update(zip(missing, computed, strict=True))
        self.last_stats = CacheStats(len(texts), len(unique), len(unique) - len(missing), len(missing))
        out = np.empty((len(texts), self.encoder.dim), dtype=np.float32)
        for i, key in enumerate(keys):
            out[i] = found[key]
        return out

    def nearest(self, vector: np.ndarray, k: int = 10) -> list[Neighbour]:
        """The ``k`` stored vectors of this encoder closest to ``vector`` by cosine similarity."""
        dim = self.encoder.dim
        vector = np.asarray(vector, dtype=np.float32)
        if vector.shape != (dim,):
            raise EmbeddingDimensionError(f"query vector has shape {vector.shape}, expected ({dim},)")
        with self.db.connect() as conn:
            self._register_encoder(conn)
            # HNSW filters after the graph walk; widen the walk so the encoder filter still leaves k rows.
            conn.execute(f"SET LOCAL hnsw.ef_search = {max(40, 4 * k)}")
            rows = conn.execute(
                f"SELECT text_hash, 1 - (embedding::vector({dim}) <=> %(q)s::vector({dim}))"
                f" FROM embeddings WHERE dim = {dim} AND encoder_id = %(id)s AND encoder_revision = %(rev)s"
                f" ORDER BY embedding::vector({dim}) <=> %(q)s::vector({dim}) LIMIT %(k)s",
                {"q": vector, "id": self._key[0], "rev": self._key[1], "k": k},
            ).fetchall()
        return [Neighbour(bytes(h), float(s)) for h, s in rows]
