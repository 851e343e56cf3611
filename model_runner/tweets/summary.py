"""Extractive summary of what people said: volume, class shares and, per predicted class, the tweets
nearest to that class's embedding centroid over the period (pgvector ``avg`` and ``<=>`` in SQL).

Served traffic of the same window (sampled ``/inference`` answers) comes along as ``served``: volume,
class shares and mean confidence only, since its texts are not kept by default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from model_runner.monitoring.store import window_counts
from model_runner.store import EmbeddingStore
from model_runner.tweets.vectors import EncoderKey, VectorSource, embedding_join
from model_runner.tweets.window import LATEST_PREDICTION, SOURCE_FILTER, TOP_SCORE, TWEET_TIME, Window


@dataclass
class ClassSummary:
    label: str
    count: int
    share: float
    mean_confidence: float
    examples: list[dict] = field(default_factory=list)


@dataclass
class Summary:
    task: str
    window: dict
    found_by: str | None
    volume: int
    shares: dict[str, float]
    mean_confidence: float | None
    classes: list[ClassSummary]
    served: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def summarise(
    store: EmbeddingStore | VectorSource,
    task: str,
    window: Window,
    *,
    found_by: str | None = None,
    per_class: int = 3,
) -> Summary:
    key = EncoderKey.of(store)
    d = int(key.dim)
    params = {
        **key.params(),
        "task": task,
        "since": window.since,
        "until": window.until,
        "found_by": found_by,
        "k": per_class,
    }
    scope = f"{TWEET_TIME} >= %(since)s AND {TWEET_TIME} < %(until)s AND {SOURCE_FILTER}"
    with store.db.connect() as conn:
        counts = conn.execute(
            f"SELECT l.label, count(*), avg({TOP_SCORE}) FROM tweets t {LATEST_PREDICTION}"
            f" WHERE {scope} GROUP BY 1 ORDER BY 2 DESC, 1",
            params,
        ).fetchall()
        nearest = conn.execute(
            f"""
            WITH win AS (
                SELECT DISTINCT ON (l.label, t.text_hash) t.tweet_id, t.author, t.text, t.created_at,
                       l.label, e.embedding::vector({d}) AS v
                FROM tweets t {LATEST_PREDICTION} {embedding_join(key, "t.text_hash")}
                WHERE {scope}
                ORDER BY l.label, t.text_hash, t.tweet_id
            ), centroid AS (
                SELECT label, avg(v) AS c FROM win GROUP BY label
            ), ranked AS (
                SELECT w.tweet_id, w.author, w.text, w.created_at, w.label, 1 - (w.v <=> c.c) AS similarity,
                       row_number() OVER (PARTITION BY w.label ORDER BY w.v <=> c.c, w.tweet_id) AS rank
                FROM win w JOIN centroid c USING (label)
            )
            SELECT label, tweet_id, author, text, created_at, similarity FROM ranked
            WHERE rank <= %(k)s ORDER BY label, rank
            """,
            params,
        ).fetchall()
    volume = sum(n for _, n, _ in counts)
    classes = {
        label: ClassSummary(label, n, round(n / volume, 6), round(float(conf), 6))
        for label, n, conf in counts
    }
    for label, tweet_id, author, text, created_at, similarity in nearest:
        classes[label].examples.append(
            {
                "tweet_id": str(tweet_id),
                "author": author,
                "text": text,
                "created_at": created_at.isoformat() if created_at else None,
                "similarity": round(float(similarity), 6),
            }
        )
    mean_conf = sum(c.mean_confidence * c.count for c in classes.values()) / volume if volume else None
    served = None
    if found_by is None:  # served traffic belongs to no watched source
        found = window_counts(store.db, task, window.since, window.until)
        served = {
            "volume": found.volume,
            "shares": {k: round(n / found.volume, 6) for k, n in found.counts.items()}
            if found.volume
            else {},
            "mean_confidence": found.mean_confidence,
        }
    return Summary(
        task=task,
        window=window.to_dict(),
        found_by=found_by,
        volume=volume,
        shares={c.label: c.share for c in classes.values()},
        mean_confidence=round(mean_conf, 6) if mean_conf is not None else None,
        classes=list(classes.values()),
        served=served,
    )
