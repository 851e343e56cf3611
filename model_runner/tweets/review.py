"""The review queue and the labels that come back from it.

Labelled rows become ``labelled_examples`` with ``source='feedback'`` (the weekly retrain adds every
such row of its task to the training data), deduplicated by the hash of the normalised text, and
leave the review queue in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from model_runner.db import Database
from model_runner.errors import TweetpulseError
from model_runner.store.examples import Example, ExampleStore
from model_runner.store.keys import normalise, text_key

FEEDBACK_SOURCE = "feedback"


class InvalidLabels(TweetpulseError, ValueError):
    """Rows whose label is not one of the task's labels, or that name neither a text nor a tweet."""

    status, type = 422, "invalid_request"

    def __init__(self, problems: Sequence[str]):
        shown = "; ".join(problems[:10])
        more = f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
        super().__init__(f"{len(problems)} invalid label rows, nothing was imported: {shown}{more}")
        self.problems = list(problems)

    def details(self) -> dict:
        return {"problems": self.problems[:50]}


@dataclass(frozen=True)
class LabelItem:
    label: str
    text: str | None = None
    tweet_id: int | None = None


@dataclass
class LabelImport:
    received: int = 0
    added: int = 0
    duplicates: int = 0
    removed_from_review: int = 0
    unknown_tweets: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class ReviewItem:
    tweet_id: int
    text: str
    author: str | None
    predicted_label: str
    top_score: float
    model_version: str
    queued_at: datetime


def list_review(db: Database, task: str, *, limit: int = 50, offset: int = 0) -> tuple[int, list[ReviewItem]]:
    """The least confident queued tweets first, and how many are queued in all."""
    with db.connect() as conn:
        (total,) = conn.execute("SELECT count(*) FROM review_queue WHERE task = %s", (task,)).fetchone()
        rows = conn.execute(
            "SELECT q.tweet_id, t.text, t.author, q.predicted_label, q.top_score, q.model_version,"
            " q.queued_at"
            " FROM review_queue q JOIN tweets t USING (tweet_id) WHERE q.task = %s"
            " ORDER BY q.top_score, q.tweet_id LIMIT %s OFFSET %s",
            (task, limit, offset),
        ).fetchall()
    return total, [ReviewItem(*row) for row in rows]


def import_labels(
    db: Database, task: str, items: Sequence[LabelItem], *, allowed_labels: Sequence[str] | None
) -> LabelImport:
    """All-or-nothing: any bad row rejects the whole batch with every problem listed.

    ``allowed_labels`` are the task's declared classes; None (a task whose classes come from its data)
    accepts any non-empty name."""
    allowed = set(allowed_labels) if allowed_labels else None
    problems = []
    for i, item in enumerate(items, start=1):
        if allowed is None and not item.label.strip():
            problems.append(f"row {i}: the label is empty")
        elif allowed is not None and item.label not in allowed:
            problems.append(f"row {i}: label {item.label!r} is not one of {sorted(allowed)}")
        if item.text is None and item.tweet_id is None:
            problems.append(f"row {i}: needs a text or a tweet_id")
        elif item.text is not None and not normalise(item.text):
            problems.append(f"row {i}: the text is empty")
    if problems:
        raise InvalidLabels(problems)
    result = LabelImport(received=len(items))
    with db.connect() as conn, conn.cursor() as cur:
        wanted = [it.tweet_id for it in items if it.text is None]
        texts = dict(cur.execute("SELECT tweet_id, text FROM tweets WHERE tweet_id = ANY(%s)", (wanted,)))
        rows: dict[bytes, tuple] = {}
        for item in items:
            text = item.text if item.text is not None else texts.get(item.tweet_id)
            if text is None:
                result.unknown_tweets.append(item.tweet_id)
                continue
            clean = normalise(text)
            # within one batch the first label of a text wins, as in the table
            rows.setdefault(text_key(clean), Example(clean, item.label, FEEDBACK_SOURCE, "train"))
        if rows:
            # one transaction: the labels land and leave the review queue together
            result.added = ExampleStore(db, task).upsert(rows.values(), cur=cur)
            cur.execute(
                "DELETE FROM review_queue WHERE task = %s AND text_hash = ANY(%s)", (task, list(rows))
            )
            result.removed_from_review = max(cur.rowcount, 0)
        result.duplicates = result.received - len(result.unknown_tweets) - result.added
    return result
