import numpy as np

from model_runner.store import EmbeddingStore, ExampleStore
from model_runner.store.examples import Example

from .test_embeddings import TableEncoder


def test_upsert_deduplicates_by_normalised_text(db):
    store = ExampleStore(db, "sentiment")
    rows = [Example("great  day @ann", "positive", "a.jsonl"), Example("awful", "negative", "a.jsonl")]
    assert store.upsert(rows) == 2
    assert store.upsert(rows) == 0
    assert store.upsert([Example("great day @bob", "positive", "b.jsonl")]) == 0  # same normalised text
    assert store.count() == 2
    assert ExampleStore(db, "emotion").upsert(rows) == 2  # tasks are separate


def test_added_since_returns_only_new_rows(db):
    store = ExampleStore(db, "sentiment")
    store.upsert([Example("old one", "neutral", "seed")])
    with db.connect() as conn:
        (mark,) = conn.execute("SELECT max(added_at) FROM labelled_examples").fetchone()
    store.upsert([Example("new one", "positive", "review")])
    assert [e.text for e in store.added_since(mark)] == ["new one"]
    assert len(store.added_since(None)) == 2


def test_similar_joins_labels_to_nearest_vectors(db):
    table = {"love it": [1.0, 0.0], "hate it": [-1.0, 0.0], "meh": [0.0, 1.0]}
    enc = TableEncoder(table)
    EmbeddingStore(db, enc).get_or_compute(list(table))
    store = ExampleStore(db, "sentiment")
    store.upsert(
        [
            Example("love it", "positive", "s"),
            Example("hate it", "negative", "s"),
            Example("meh", "neutral", "s"),
        ]
    )
    hits = store.similar(np.array([0.9, 0.1]), "table", "r1", k=2)
    assert [(h.text, h.label) for h in hits] == [("love it", "positive"), ("meh", "neutral")]
    assert hits[0].similarity > hits[1].similarity
