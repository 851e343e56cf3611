"""Live data vs training data: centroid distance of embeddings (pgvector, in SQL) and class shares.

The reference is the task's training examples in ``labelled_examples`` (split ``train``, feedback
included). The live side has two sources, each reported in ``sources``:

- ``inspected``: every tweet of the window with a prediction for the task (the inspector's);
- ``served``: the sampled ``/inference`` answers of the window (``served_predictions``). They keep no
  vectors, so their drift is that of the class distribution (``share_distance``, the total variation
  distance to the training shares) and their mean confidence.

The top-level fields are the verdict the regression DAG reads: the class-share fields (``live_tweets``,
``live_shares``, ``dominant_*``) come from the source with the highest dominant share (``source``
names it; ties and empty windows: ``inspected``), so a collapse of either source raises the collapse
alert; the embedding fields (``live_embedded``, ``centroid_distance``) are always the inspected
tweets', the only ones with vectors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from model_runner.monitoring.rolling import total_variation
from model_runner.monitoring.store import window_counts
from model_runner.store import EmbeddingStore
from model_runner.store.examples import ExampleStore
from model_runner.tweets.vectors import EncoderKey, VectorSource, embedding_join
from model_runner.tweets.window import LATEST_PREDICTION, TOP_SCORE, TWEET_TIME, Window


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
    source: str = "inspected"
    sources: list[SourceDrift] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SourceDrift:
    """One live source of the window against the training reference."""

    source: str  # "inspected" | "served"
    volume: int
    embedded: int
    centroid_distance: float | None
    shares: dict[str, float]
    dominant_label: str | None
    dominant_share: float | None
    mean_confidence: float | None
    share_distance: float | None  # total variation distance to the training shares (0..1)

    @classmethod
    def of(cls, source: str, rows, reference: dict[str, float], **extra) -> SourceDrift:
        shares = _shares(list(rows))
        label, share = max(shares.items(), key=lambda kv: kv[1]) if shares else (None, None)
        return cls(
            source=source,
            volume=sum(n for _, n in rows),
            shares=shares,
            dominant_label=label,
            dominant_share=share,
            share_distance=total_variation(shares, reference) if shares and reference else None,
            **{"embedded": 0, "centroid_distance": None, "mean_confidence": None, **extra},
        )


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


def served_drift(db, task: str, window: Window, reference: dict[str, float]) -> SourceDrift:
    """The ``served`` source: class shares, mean confidence and share distance of sampled answers."""
    found = window_counts(db, task, window.since, window.until)
    return SourceDrift.of(
        "served", list(found.counts.items()), reference, mean_confidence=found.mean_confidence
    )


def drift_report(store: EmbeddingStore | VectorSource, task: str, window: Window) -> DriftReport:
    """Both sources (see the module's docstring); the top-level fields carry the verdict."""
    report = _inspected_report(store, task, window)
    served = served_drift(store.db, task, window, report.reference_shares)
    report.sources.append(served)
    inspected = report.sources[0]
    if served.volume and (
        not inspected.volume or (served.dominant_share or 0) > (inspected.dominant_share or 0)
    ):
        report.source = "served"
        report.live_tweets = served.volume
        report.live_shares = served.shares
        report.dominant_label, report.dominant_share = served.dominant_label, served.dominant_share
    return report


def _inspected_report(store: EmbeddingStore | VectorSource, task: str, window: Window) -> DriftReport:
    """Reads only: vectors of tweets are computed when they are stored, those of the reference by
    ``embed_reference`` (``POST /drift/reference``); what has no vector is left out and counted."""
    report, live_rows = _inspected_only(store, task, window)
    volume = sum(n for _, n, _ in live_rows)
    conf = sum(float(c) * n for _, n, c in live_rows if c is not None) / volume if volume else None
    report.sources = [
        SourceDrift.of(
            "inspected",
            [(label, n) for label, n, _ in live_rows],
            report.reference_shares,
            embedded=report.live_embedded,
            centroid_distance=report.centroid_distance,
            mean_confidence=None if conf is None else round(conf, 6),
        )
    ]
    return report


def _inspected_only(
    store: EmbeddingStore | VectorSource, task: str, window: Window
) -> tuple[DriftReport, list]:
    """The inspected tweets' report, and their (label, count, mean top score) rows."""
    params = {"task": task, "since": window.since, "until": window.until}
    in_window = f"{TWEET_TIME} >= %(since)s AND {TWEET_TIME} < %(until)s"
    if _live_count(store, in_window, params) == 0:
        # nothing inspected in the window (e.g. a fresh deployment): no reason to embed the reference,
        # which on first use means the whole training set, competing with a training job for the CPU
        return _empty_report(store, task, window), []
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
            f"SELECT l.label, count(*), avg({TOP_SCORE}) FROM tweets t {LATEST_PREDICTION}"
            f" WHERE {in_window} GROUP BY 1",
            params,
        ).fetchall()
    ref_rows = list(ExampleStore(store.db, task).label_counts().items())
    live_shares = _shares([(label, n) for label, n, _ in live_rows])
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
    ), live_rows
