"""Embed a whole dataset into the store and record its labelled examples."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from model_runner.data import prepare_dataset
from model_runner.store.examples import Example
from model_runner.tasks import Task
from model_runner.wiring import Components


@dataclass
class EmbedReport:
    data: str
    task: str
    texts: int
    computed: int
    cached: int
    new_examples: int
    seconds: float
    encoder: str

    def to_dict(self) -> dict:
        return asdict(self)


def embed_dataset(components: Components, task: Task, data: str | None = None) -> EmbedReport:
    started = time.perf_counter()
    source = data or task.data
    prepared = prepare_dataset(
        source,
        **task.read_options(),
        eval_fraction=components.settings.eval_fraction,
        seed=components.settings.seed,
    )
    splits = {"train": prepared.train, "eval": prepared.eval}
    examples = [
        Example(text, prepared.labels[label], source=str(source), split=split)
        for split, ds in splits.items()
        for text, label in zip(ds["text"], ds["label"], strict=True)
    ]
    new_examples = components.examples(task.name).upsert(examples)
    store = components.embeddings
    store.get_or_compute([ex.text for ex in examples], progress=True)
    stats = store.last_stats
    return EmbedReport(
        data=str(source),
        task=task.name,
        texts=stats.requested,
        computed=stats.computed,
        cached=stats.cached,
        new_examples=new_examples,
        seconds=round(time.perf_counter() - started, 2),
        encoder=f"{store.encoder.encoder_id}@{store.encoder.revision}",
    )
