"""Live data vs training data: centroid distance of embeddings (pgvector, in SQL) and class shares.

The reference is the task's training examples in ``labelled_examples`` (split ``train``, feedback
included); the live side is every tweet of the window with a prediction for the task.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from model_runner.store import EmbeddingStore
from model_runner.store.examples import ExampleStore
from model_runner.tweets.vectors import EncoderKey, VectorSource, embedding_join
from model_runner.tweets.window import LATEST_PREDICTION, TWEET_TIME, Window


@dataclass
class DriftReport:
    task: str
    window: dict
    live_tweets: int
    live_embedded: int
    reference_examples: int
    reference_embedded: int
    centroid_distance: float | None
    live_shares: dict[str, float]
    reference_shares: dict[str, float]
    dominant_label: str | None
    dominant_share: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def _shares(rows) -> dict[str, float]:
    total = sum(n for _, n in rows)
    return {label: round(n / total, 6) for label, n in sorted(rows)} if total else {}


def embed_reference(store: EmbeddingStore, task: str, limit: int = 5000) -> int:
    """Vectors for training examples that have none yet (typically new feedback rows)."""
    texts = ExampleStore(store.db, task).without_embedding(
        store.encoder.encoder_id, store.encoder.revision, limit=limit
    )
    if texts:
        store.get_or_compute(texts)
    return len(texts)


def reference_size(store: EmbeddingStore | VectorSource, task: str) -> int:
    """Training examples of the task stored as drift's reference (feedback rows not counted)."""
    return ExampleStore(store.db, task).reference_count()


def _live_count(store: EmbeddingStore | VectorSource, in_window: str, params: dict) -> int:
    with store.db.connect() as conn:
        (n,) = conn.execute(
            f"SELECT count(*) FROM tweets t {LATEST_PREDICTION} WHERE {in_window}", params
        ).fetchone()
    return n


def _empty_report(store: EmbeddingStore | VectorSource, task: str, window: Window) -> DriftReport:
    ref_rows = list(ExampleStore(store.db, task).label_counts().items())
    return DriftReport(
        task=task,
        window=window.to_dict(),
        live_tweets=0,
        live_embedded=0,
        reference_examples=sum(n for _, n in ref_rows),
        reference_embedded=0,
        centroid_distance=None,
        live_shares={},
        reference_shares=_shares(ref_rows),
        dominant_label=None,
        dominant_share=None,
    )


def drift_report(store: EmbeddingStore | VectorSource, task: str, window: Window) -> DriftReport:
    """Reads only: vectors of tweets are computed when they are stored, those of the reference by
    ``embed_reference`` (``POST /drift/reference``); what has no vector is left out and counted."""
    params = {"task": task, "since": window.since, "until": window.until}
    in_window = f"{TWEET_TIME} >= %(since)s AND {TWEET_TIME} < %(until)s"
    if _live_count(store, in_window, params) == 0:
        # nothing inspected in the window (e.g. a fresh deployment): no reason to embed the reference,
        # which on first use means the whole training set, competing with a training job for the CPU
        return _empty_report(store, task, window)
    key = EncoderKey.of(store)
    d = int(key.dim)
    params.update(key.params())
    with store.db.connect() as conn:
        live_n, live_emb, ref_emb, distance = conn.execute(
            f"""
            WITH live AS (
                SELECT e.embedding::vector({d}) AS v
                FROM tweets t {LATEST_PREDICTION} {embedding_join(key, "t.text_hash")}
                WHERE {in_window}
            ), ref AS (
                SELECT e.embedding::vector({d}) AS v
                FROM labelled_examples x {embedding_join(key, "x.text_hash")}
                WHERE x.task = %(task)s AND x.split = 'train'
            )
            SELECT (SELECT count(*) FROM tweets t {LATEST_PREDICTION} WHERE {in_window}),
                   (SELECT count(*) FROM live), (SELECT count(*) FROM ref),
                   (SELECT avg(v) FROM live) <=> (SELECT avg(v) FROM ref)
            """,
            params,
        ).fetchone()
        live_rows = conn.execute(
            f"SELECT l.label, count(*) FROM tweets t {LATEST_PREDICTION} WHERE {in_window} GROUP BY 1",
            params,
        ).fetchall()
    ref_rows = list(ExampleStore(store.db, task).label_counts().items())
    live_shares = _shares(live_rows)
    dominant = max(live_shares.items(), key=lambda kv: kv[1]) if live_shares else (None, None)
    return DriftReport(
        task=task,
        window=window.to_dict(),
        live_tweets=live_n,
        live_embedded=live_emb,
        reference_examples=sum(n for _, n in ref_rows),
        reference_embedded=ref_emb,
        centroid_distance=None if distance is None else round(float(distance), 6),
        live_shares=live_shares,
        reference_shares=_shares(ref_rows),
        dominant_label=dominant[0],
        dominant_share=dominant[1],
    )
