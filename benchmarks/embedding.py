"""Encoder throughput and the embedding cache: cold (compute + store) vs warm (read back)."""

from __future__ import annotations

import time

import torch

from benchmarks.common import load_texts, scratch_database, table
from model_runner.db import Database
from model_runner.encoder import FrozenEncoder
from model_runner.settings import Settings
from model_runner.store import EmbeddingStore


def run(limit: int | None = None) -> None:
    settings = Settings()
    encoder = FrozenEncoder(
        settings.encoder_id,
        device="cpu",
        max_length=settings.encoder_max_length,
        batch_size=settings.encoder_batch_size,
    )
    texts = load_texts("tweet-sentiment", "train", limit) + load_texts("tweet-sentiment", "validation", limit)
    print(
        f"{len(texts)} tweets, encoder {encoder.encoder_id}@{encoder.revision}, "
        f"torch threads {torch.get_num_threads()}",
        flush=True,
    )

    sample = texts[:1000]
    encoder.encode(sample[:64])  # warm-up: first call pays for lazy init
    t0 = time.perf_counter()
    encoder.encode(sample)
    throughput = len(sample) / (time.perf_counter() - t0)

    with scratch_database() as url:
        store = EmbeddingStore(Database(url), encoder)
        t0 = time.perf_counter()
        store.get_or_compute(texts)
        cold = time.perf_counter() - t0
        computed = store.last_stats.computed
        t0 = time.perf_counter()
        store.get_or_compute(texts)
        warm = time.perf_counter() - t0
        assert store.last_stats.computed == 0

    print(
        table(
            [
                ("encoder fp32, texts/s", f"{throughput:.0f}", ""),
                (f"cache cold ({computed} computed), s", f"{cold:.2f}", "1.0x"),
                ("cache warm (0 computed), s", f"{warm:.2f}", f"{cold / warm:.1f}x faster"),
            ],
            ("measure", "value", "ratio"),
        )
    )
