"""Prepares the ModelRunner for the DAG tests; runs in the service environment (.venv), not Airflow's.

    python runner_fixture.py prepare        tiny BERT, small datasets, champion v1; prints JSON
    python runner_fixture.py train [--shuffle]   one more registered version (shuffled labels = worse)
    python runner_fixture.py train --task emotion  an emotion model (tiny data): emotion gets a champion
    python runner_fixture.py set-champion V  move the champion alias (plants a regression)
    python runner_fixture.py clear-champion TASK   remove TASK's champion alias (undo the above)

Settings come from the TWEETPULSE_* environment, exactly as the served ModelRunner reads them.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
from pathlib import Path

WORDS = {
    "negative": ["awful", "broken", "hate", "refund", "worst", "slow"],
    "neutral": ["tuesday", "store", "update", "hours", "colour", "version"],
    "positive": ["love", "great", "amazing", "thanks", "best", "happy"],
}
EMOTION_WORDS = {
    "anger": ["furious", "outraged", "angry", "livid", "hate", "rage"],
    "joy": ["delighted", "thrilled", "laughing", "fun", "yay", "glad"],
    "optimism": ["hopeful", "tomorrow", "soon", "believe", "better", "improve"],
    "sadness": ["sad", "crying", "lonely", "miss", "lost", "gloomy"],
}
NOUNS = ["speaker", "app", "support", "delivery", "battery", "alarm", "sound", "wifi"]


def rows(n_per_class: int, seed: int, shuffle: bool = False, words: dict | None = None) -> list[dict]:
    rng = random.Random(seed)
    out = [
        {"text": f"{rng.choice(w)} {rng.choice(NOUNS)} {rng.choice(w)} {seed}-{i}", "label": label}
        for label, w in (words or WORDS).items()
        for i in range(n_per_class)
    ]
    if shuffle:
        labels = [r["label"] for r in out]
        rng.shuffle(labels)
        out = [{**r, "label": lab} for r, lab in zip(out, labels, strict=True)]
    return out


def write(path: Path, data: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in data))


def tiny_bert(folder: Path) -> None:
    import torch
    from transformers import BertConfig, BertModel

    from model_runner.encoder.resolve import _bundled_default

    base = _bundled_default()
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(base / name, folder / name)
    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder, safe_serialization=True)


def train(data: Path, task: str = "sentiment") -> dict:
    from model_runner.settings import get_settings
    from model_runner.tasks import get_task
    from model_runner.training.run import run_training
    from model_runner.wiring import Components

    settings = get_settings()
    outcome = run_training(Components(settings), get_task(task, settings), data=str(data))
    return {"version": outcome.model_version, "promoted": outcome.promoted, "metrics": outcome.summary()}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["prepare", "train", "set-champion", "clear-champion"])
    parser.add_argument("value", nargs="?")
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--shuffle", action="store_true")
    parser.add_argument("--task", default="sentiment")
    args = parser.parse_args()
    home = args.home
    if args.command == "prepare":
        tiny_bert(home / "tiny-bert")
        write(home / "data" / "train.jsonl", rows(30, seed=1))
        write(home / "data" / "validation.jsonl", rows(12, seed=2))
        # a dataset that exists but cannot train: every row is malformed
        write(home / "bad" / "train.jsonl", [{"text": 5, "label": "zzz"}] * 5)
        result = train(home / "data")
        from model_runner.db.server import resolve_database_url
        from model_runner.settings import get_settings

        result["database_url"] = resolve_database_url(get_settings())
    elif args.command == "train" and args.task == "emotion":
        folder = home / "emotion"
        write(folder / "train.jsonl", rows(20, seed=5, words=EMOTION_WORDS))
        write(folder / "validation.jsonl", rows(8, seed=6, words=EMOTION_WORDS))
        result = train(folder, "emotion")
    elif args.command == "train":
        folder = home / ("shuffled" if args.shuffle else "data")
        if args.shuffle:
            write(folder / "train.jsonl", rows(30, seed=1, shuffle=True))
            shutil.copy(home / "data" / "validation.jsonl", folder / "validation.jsonl")
        result = train(folder)
    elif args.command == "clear-champion":
        from model_runner.jobs.champion import registry_for
        from model_runner.settings import get_settings

        registry = registry_for(get_settings())
        registry._client.delete_registered_model_alias(registry.model_name(args.value), registry.CHAMPION)
        result = {"cleared": args.value}
    else:
        from model_runner.jobs.champion import registry_for
        from model_runner.settings import get_settings

        registry_for(get_settings()).promote("sentiment", args.value)
        result = {"champion": args.value}
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
