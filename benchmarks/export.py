"""The portable export's tokenizer: does it clean exactly as the service does, and what does that cost?

The export carries ``clean_text`` inside ``tokenizer.json``'s normalizer (modeling/portable_tokenizer.py)
so that a client without tweetpulse labels tweets as ``/inference`` does. This compares, on every
tweet of the development data, the token ids of the exported tokenizer on the raw text with those of
the service's tokenizer on ``clean_text(text)``, and times both ways side by side in one run.
"""

from __future__ import annotations

import json
import time

from tokenizers import Tokenizer

from benchmarks.common import load_texts, table
from model_runner.data.cleaning import clean_text
from model_runner.encoder.resolve import _bundled_default
from model_runner.modeling.portable_tokenizer import portable_tokenizer_json

MAX_LENGTH = 128


def _best_rate(fn, n: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return n / best


def run(limit: int | None = None) -> None:
    base = json.loads((_bundled_default() / "tokenizer.json").read_text(encoding="utf-8"))
    service = Tokenizer.from_str(json.dumps(base))
    service.no_padding()
    service.enable_truncation(MAX_LENGTH)
    portable = Tokenizer.from_str(json.dumps(portable_tokenizer_json(base, MAX_LENGTH)))

    rows = []
    for task in ("tweet-sentiment", "tweet-emotion"):
        for split in ("train", "validation"):
            texts = load_texts(task, split, limit)
            want = [e.ids for e in service.encode_batch([clean_text(t) for t in texts])]
            got = [e.ids for e in portable.encode_batch(texts)]
            same = sum(a == b for a, b in zip(want, got, strict=True))
            rows.append((f"{task}/{split}", len(texts), same, f"{same / len(texts):.4%}"))
    print(table(rows, ("texts", "n", "identical ids", "share")))

    texts = load_texts("tweet-sentiment", "validation", limit) + load_texts(
        "tweet-emotion", "validation", limit
    )
    n = len(texts)
    service_batch = _best_rate(lambda: service.encode_batch([clean_text(t) for t in texts]), n)
    portable_batch = _best_rate(lambda: portable.encode_batch(texts), n)
    service_one = _best_rate(lambda: [service.encode(clean_text(t)) for t in texts], n)
    portable_one = _best_rate(lambda: [portable.encode(t) for t in texts], n)
    print(
        table(
            [
                (
                    "batch",
                    f"{service_batch:.0f}",
                    f"{portable_batch:.0f}",
                    f"{service_batch / portable_batch:.1f}x",
                ),
                (
                    "one at a time",
                    f"{service_one:.0f}",
                    f"{portable_one:.0f}",
                    f"{service_one / portable_one:.1f}x",
                ),
            ],
            ("tweets/s", "clean_text + tokenizer", "exported tokenizer", "service / exported"),
        )
    )
