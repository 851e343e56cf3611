"""Warm-up A/B: emotion fine-tuned from the base encoder vs from the sentiment-warmed encoder.

Side by side in one run, on the same rows and seeds: the default ``finetune`` candidate is fitted on
a stratified 80% of emotion's train.jsonl, once from the base encoder and once from the encoder the
product's own warm-up (``warm_up_encoder``) tuned on sentiment; macro F1 is read on the other 20%
and on validation.jsonl. About 40 min on 2 CPU cores (one warm-up, six fine-tunes).
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split

from benchmarks.common import SHARED, scratch_database, table
from model_runner.data import prepare_dataset
from model_runner.settings import Settings
from model_runner.tasks import get_task
from model_runner.training.cv import CVData
from model_runner.training.fitting import fit_candidate, predict_candidate
from model_runner.training.search_space import SEARCH_SPACE
from model_runner.training.warmup import embed_with, warm_up_encoder
from model_runner.wiring import Components

SEEDS = (0, 1, 2)


def run(limit: int | None = None) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with scratch_database() as url, tempfile.TemporaryDirectory(prefix="tp-bench-warmup-") as home:
        settings = Settings(
            database_url=url,
            home=Path(home),
            task_overrides={
                "sentiment": {"data": str((SHARED / "tweet-sentiment").resolve())},
                "emotion": {"warmup": "sentiment"},
            },
            device=device,
        )
        components = Components(settings)
        task = get_task("emotion", settings)
        emotion = prepare_dataset(
            str((SHARED / "tweet-emotion").resolve()), seed=settings.seed, **task.read_options()
        )
        texts, y = list(emotion.train["text"]), np.asarray(emotion.train["label"])
        if limit:
            texts, y = texts[:limit], y[:limit]
        val_texts, y_val = list(emotion.eval["text"]), np.asarray(emotion.eval["label"])
        fit_idx, held_idx = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=0)
        x = components.embeddings.get_or_compute(texts)
        warm = warm_up_encoder(components, task, Path(home) / "warm")
        x_warm = embed_with(warm, texts, components)
        base_path = str(components.embeddings.encoder.resolved.path)
        candidate = SEARCH_SPACE["finetune"][0]
        n = len(emotion.labels)
        rows, scores = [], {"base": [], "warm": []}
        base = CVData(x, texts, y, emotion.labels, base_path, settings.encoder_max_length, 0, device)
        for seed in SEEDS:
            for name, init_path, x_init in (("base", "", None), ("warm", str(warm.path), x_warm)):
                data = replace(base, seed=seed, init_path=init_path, x_init=x_init)
                model = fit_candidate(candidate, data, fit_idx)
                held = predict_candidate(model, candidate, data, held_idx).argmax(1)
                val = model.predict_proba(val_texts, clean=False).argmax(1)
                pair = (
                    f1_score(y[held_idx], held, average="macro", labels=range(n)),
                    f1_score(y_val, val, average="macro", labels=range(n)),
                )
                scores[name].append(pair)
                rows.append((f"seed {seed}, from {name}", f"{pair[0]:.4f}", f"{pair[1]:.4f}"))
                print(*rows[-1], flush=True)
    for name in ("base", "warm"):
        mean = np.mean(scores[name], axis=0)
        rows.append((f"mean, from {name}", f"{mean[0]:.4f}", f"{mean[1]:.4f}"))
    diff = np.array(scores["warm"]) - np.array(scores["base"])
    rows.append(("warm - base, mean", f"{diff[:, 0].mean():+.4f}", f"{diff[:, 1].mean():+.4f}"))
    print(
        f"device {device}; warm-up on {warm.task}: {warm.rows} tweets, {warm.epochs} epochs, "
        f"{warm.seconds:.0f} s; emotion fits on {len(fit_idx)} tweets"
    )
    print(table(rows, ("emotion finetune", "macro F1, held-out fifth", "macro F1, validation.jsonl")))
