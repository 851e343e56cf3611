"""The default ``train`` on the real sentiment data: wall-clock time per stage and final metrics.

Runs against a scratch database and a scratch MLflow store, so the user's champion is never touched.
The embedding cache starts cold, as it would on a fresh machine.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from benchmarks.common import SHARED, scratch_database, table
from model_runner.settings import Settings
from model_runner.tasks import get_task
from model_runner.training.run import run_training
from model_runner.wiring import Components

EPOCH_ROWS = 1000


def _epoch_seconds(device: str) -> dict[str, float]:
    """One epoch on the same 1,000 tweets for each encoder adapter, with its default hyperparameters."""
    import time

    import numpy as np

    from benchmarks.common import load_texts
    from model_runner.encoder import resolve_model
    from model_runner.training.fit_lora import fit_finetune, fit_lora
    from model_runner.training.search_space import SEARCH_SPACE

    texts = load_texts("tweet-sentiment", "train", EPOCH_ROWS)
    y = np.arange(len(texts)) % 3
    base = resolve_model(Settings().encoder_id).path
    out = {}
    for name, fit in (("lora", fit_lora), ("finetune", fit_finetune)):
        hp = {**SEARCH_SPACE[name][0].hp, "epochs": 1}
        start = time.perf_counter()
        fit(base, texts, y, ["a", "b", "c"], device=device, **hp)
        out[name] = time.perf_counter() - start
    return out


def run(limit: int | None = None) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    epoch = _epoch_seconds(device)
    print(
        f"one epoch on {EPOCH_ROWS} tweets: lora {epoch['lora']:.1f}s, finetune {epoch['finetune']:.1f}s "
        f"(finetune/lora {epoch['finetune'] / epoch['lora']:.2f}x)",
        flush=True,
    )
    with scratch_database() as url, tempfile.TemporaryDirectory(prefix="tp-bench-train-") as home:
        settings = Settings(database_url=url, home=Path(home))
        task = get_task("sentiment", settings)
        data = str((SHARED / "tweet-sentiment").resolve())
        fraction = min(1.0, limit / 9284) if limit else None
        outcome = run_training(Components(settings), task, data=data, sample_fraction=fraction)
    rows = [(f"stage {name}", f"{sec:.0f}", "") for name, sec in outcome.stage_seconds.items()]
    rows.append(("total (default train), s", f"{outcome.seconds:.0f}", f"{outcome.seconds / 60:.1f} min"))
    rows.append(
        (
            f"eval {outcome.metric} (validation.jsonl)",
            f"{outcome.metrics[outcome.metric]:.4f}",
            f"CI {outcome.metrics[outcome.metric + '_ci']}",
        )
    )
    rows.append(("best candidate", outcome.best_candidate, ""))
    q = outcome.quantization
    rows.append(("serving", q["chosen"], q.get("reason", "")))
    if q.get("agreement") is not None:
        rows.append(
            (
                "int8 check",
                f"drop {q['score_drop']:.4f}, agreement {q['agreement']:.3f}",
                f"limits {q['max_drop']} / {q['min_agreement']}",
            )
        )
    print(f"device {device}, torch threads {torch.get_num_threads()}")
    print(table(rows, ("measure", "value", "note")))
