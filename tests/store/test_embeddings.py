from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from model_runner.store import EmbeddingDimensionError, EmbeddingStore, text_key


class TableEncoder:
    """An encoder whose vectors come from a table, counting every text it is asked to encode."""

    def __init__(self, table: dict[str, list[float]], encoder_id="table", revision="r1"):
        self.table = table
        self.encoder_id = encoder_id
        self.revision = revision
        self.dim = len(next(iter(table.values())))
        self.calls: list[str] = []

    def encode(self, texts, *, progress=False):
        self.calls.extend(texts)
        return np.array([self.table[t] for t in texts], dtype=np.float32)


def _count(db) -> int:
    with db.connect() as conn:
        return conn.execute("SELECT count(*) FROM embeddings").fetchone()[0]


def test_cache_hit_makes_zero_encoder_calls(db, tiny_encoder):
    texts = ["good morning @bob", "what a day", "what  a day", "terrible service http://x.co"]
    store = EmbeddingStore(db, tiny_encoder)
    before = tiny_encoder.texts_encoded
    first = store.get_or_compute(texts)
    # "what a day" and "what  a day" normalise to the same text: encoded once
    assert tiny_encoder.texts_encoded - before == 3
    assert (store.last_stats.computed, store.last_stats.cached) == (3, 0)

    encoded = tiny_encoder.texts_encoded
    second = EmbeddingStore(db, tiny_encoder).get_or_compute(list(reversed(texts)))
    assert tiny_encoder.texts_encoded == encoded  # zero encoder calls on a full hit
    np.testing.assert_allclose(second[::-1], first, rtol=1e-6)
    np.testing.assert_allclose(first[1], first[2])
    assert _count(db) == 3


def test_only_missing_texts_are_encoded(db):
    enc = TableEncoder({"a": [1, 0, 0], "b": [0, 1, 0], "c": [0, 0, 1]})
    store = EmbeddingStore(db, enc)
    store.get_or_compute(["a", "b"])
    enc.calls.clear()
    out = store.get_or_compute(["a", "b", "c"])
    assert enc.calls == ["c"]
    np.testing.assert_array_equal(out, np.eye(3, dtype=np.float32))


def test_upsert_is_idempotent_and_safe_under_concurrent_writers(db):
    table = {f"t{i}": list(np.random.default_rng(i).normal(size=4)) for i in range(200)}
    keys = [text_key(t) for t in table]
    vectors = np.array(list(table.values()), dtype=np.float32)
    store = EmbeddingStore(db, TableEncoder(table), write_batch=37)
    assert store.put(keys, vectors) == 200
    assert store.put(keys, vectors) == 0
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: EmbeddingStore(db, TableEncoder(table)).put(keys, vectors), range(4)))
    assert _count(db) == 200


def test_wrong_dimension_is_refused_and_nothing_is_stored(db):
    enc = TableEncoder({"a": [1, 0, 0]})
    store = EmbeddingStore(db, enc)
    good = np.eye(3, dtype=np.float32)
    bad = np.vstack([good, np.ones((1, 3))])[:, :2]  # every row 2-dim
    with pytest.raises(EmbeddingDimensionError, match="dim 3"):
        store.put([text_key(x) for x in "wxyz"], bad)
    ragged = np.zeros((2, 4), dtype=np.float32)
    with pytest.raises(EmbeddingDimensionError, match="nothing was stored"):
        store.put([text_key("p"), text_key("q")], ragged)
    assert _count(db) == 0


def test_database_refuses_a_vector_of_another_width(db):
    import psycopg

    store = EmbeddingStore(db, TableEncoder({"a": [1, 0, 0]}))
    store.get_or_compute(["a"])
    with pytest.raises(psycopg.errors.CheckViolation), db.connect() as conn:
        conn.execute("INSERT INTO embeddings VALUES ('table', 'r1', %s, 3, '[1,2]')", (text_key("zz"),))


def test_encoder_registered_with_another_dim_is_refused(db):
    EmbeddingStore(db, TableEncoder({"a": [1, 0, 0]})).get_or_compute(["a"])
    with pytest.raises(EmbeddingDimensionError, match="registered with dim 3"):
        EmbeddingStore(db, TableEncoder({"a": [1, 0]})).get_or_compute(["a"])


def test_other_encoder_or_revision_never_reads_cached_vectors(db):
    table = {"same text": [1.0, 0.0, 0.0]}
    EmbeddingStore(db, TableEncoder(table, revision="r1")).get_or_compute(["same text"])
    for enc in (TableEncoder(table, revision="r2"), TableEncoder(table, encoder_id="other")):
        EmbeddingStore(db, enc).get_or_compute(["same text"])
        assert enc.calls == ["same text"]
    assert _count(db) == 3


def test_nearest_neighbours_are_exact_on_a_small_set(db):
    # unit vectors at known angles: the cosine ranking is known by construction
    angles = {f"p{d}": d for d in (0, 10, 30, 60, 90, 135, 180)}
    table = {k: [np.cos(np.radians(a)), np.sin(np.radians(a)), 0.0] for k, a in angles.items()}
    enc = TableEncoder(table)
    store = EmbeddingStore(db, enc)
    store.get_or_compute(list(table))
    # a different encoder's vectors must not show up in the results
    EmbeddingStore(db, TableEncoder({"p0": [0.0, 0.0, 1.0]}, encoder_id="noise")).get_or_compute(["p0"])

    query = np.array([np.cos(np.radians(20)), np.sin(np.radians(20)), 0.0], dtype=np.float32)
    result = store.nearest(query, k=3)
    assert [n.text_hash for n in result] == [text_key("p10"), text_key("p30"), text_key("p0")]
    assert result[0].similarity == pytest.approx(np.cos(np.radians(10)), abs=1e-5)
    assert len(store.nearest(query, k=50)) == len(table)


def test_hnsw_index_exists_for_the_encoder_width(db):
    EmbeddingStore(db, TableEncoder({"a": [1, 0, 0]})).get_or_compute(["a"])
    with db.connect() as conn:
        indexdef = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'embeddings_hnsw_d3'"
        ).fetchone()[0]
    assert "hnsw" in indexdef and "vector_cosine_ops" in indexdef
