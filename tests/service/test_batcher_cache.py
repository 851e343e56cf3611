"""Repeated texts skip the forward pass, and a swapped-in model never answers from the old one's cache."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np

from model_runner.service.batcher import MicroBatcher


class _Model:
    """Scores a text by its length and this model's offset, and records what each pass saw."""

    labels = ("a", "b")

    def __init__(self, offset: float):
        self.offset = offset
        self.passes: list[list[str]] = []

    def predict_with_truncation(self, texts, batch_size, clean=True):
        self.passes.append(list(texts))
        p = np.array([[(len(t) % 7) / 10 + self.offset, 0.0] for t in texts], dtype=np.float32)
        p[:, 1] = 1 - p[:, 0]
        return p, np.array([len(t) > 5 for t in texts])


def _run(served_ref, calls, cache_size=100):
    async def go():
        executor = ThreadPoolExecutor(max_workers=1)
        batcher = MicroBatcher(
            "t", lambda: served_ref[0], executor, max_size=64, max_wait_ms=0, cache_size=cache_size
        )
        batcher.start()
        results = []
        for call in calls:
            if callable(call):
                call()
                continue
            results.append(await batcher.predict(call))
        await batcher.stop()
        executor.shutdown()
        return results, batcher

    return asyncio.run(go())


def test_repeats_in_a_batch_run_once_and_come_back_in_input_order():
    model = _Model(0.0)
    (result,), _ = _run([SimpleNamespace(model=model)], [["xx", "yyyyyy", "xx", "z", "xx"]])
    assert model.passes == [["xx", "yyyyyy", "z"]]
    expected, flags = model.predict_with_truncation(["xx", "yyyyyy", "xx", "z", "xx"], 32)
    assert np.array_equal(result.proba, expected) and result.truncated.tolist() == flags.tolist()


def test_texts_seen_before_skip_the_model_and_get_the_same_answer():
    model = _Model(0.0)
    (first, second), batcher = _run([SimpleNamespace(model=model)], [["ab", "cde"], ["cde", "new", "ab"]])
    assert model.passes == [["ab", "cde"], ["new"]]
    assert np.array_equal(second.proba[[2, 0]], first.proba)
    assert len(batcher.cache) == 3


def test_a_swapped_model_does_not_answer_from_the_previous_models_cache():
    old, new = _Model(0.0), _Model(0.05)
    ref = [SimpleNamespace(model=old)]
    swap = lambda: ref.__setitem__(0, SimpleNamespace(model=new))  # noqa: E731
    (before, after), _ = _run(ref, [["same text"], swap, ["same text"]])
    assert old.passes == [["same text"]] and new.passes == [["same text"]]
    assert after.proba[0, 0] == np.float32(before.proba[0, 0] + np.float32(0.05))
    assert after.served.model is new


def test_size_zero_turns_the_cache_off_but_still_runs_repeats_once_per_batch():
    model = _Model(0.0)
    _, batcher = _run([SimpleNamespace(model=model)], [["q", "q"], ["q"]], cache_size=0)
    assert model.passes == [["q"], ["q"]] and len(batcher.cache) == 0
