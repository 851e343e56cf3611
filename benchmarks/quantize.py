"""fp32 vs int8 serving model on the real base model: throughput, label agreement, macro recall.

A quick head makes the classifier meaningful: the fp32 encoder embeds a slice of the training tweets,
a class-balanced logistic regression is fitted on them and copied into a linear head. All variants
(torch and ONNX Runtime, fp32 and int8) then classify the same validation tweets with the same
batching; timings are the best of two interleaved rounds, because on a shared machine a single round
mostly measures the neighbours.
"""

from __future__ import annotations

import io
import json
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import recall_score

from benchmarks.common import SHARED, load_texts, table
from model_runner.modeling.classifier import TweetClassifier
from model_runner.modeling.heads import build_head, init_from_logistic
from model_runner.modeling.onnx_backend import to_onnx_runtime
from model_runner.modeling.quantize import METHOD, quantize_int8
from model_runner.settings import Settings

TASK = "tweet-sentiment"
LABELS = ["negative", "neutral", "positive"]
ROUNDS = 2


def _labels(split: str, limit: int | None) -> np.ndarray:
    path = (SHARED / TASK / f"{split}.jsonl").resolve()
    names = [json.loads(line)["label"] for line in path.read_text(encoding="utf-8").splitlines() if line]
    names = names[:limit] if limit else names
    return np.array([LABELS.index(str(n).strip().lower()) for n in names])


def _base_classifier(max_length: int) -> TweetClassifier:
    from transformers import AutoModel, AutoTokenizer

    from model_runner.encoder import resolve_model

    path = resolve_model(Settings().encoder_id).path
    encoder = AutoModel.from_pretrained(path, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = TweetClassifier(
        encoder,
        tokenizer,
        build_head("linear", encoder.config.hidden_size, 3, dropout=0.0),
        LABELS,
        max_length=max_length,
    )
    return model.eval().requires_grad_(False)


def _fit_quick_head(model: TweetClassifier, texts: list[str], y: np.ndarray) -> None:
    """Fit a class-balanced logistic regression on fp32 embeddings and copy it into ``model.head``."""
    clf = LogisticRegression(C=10.0, class_weight="balanced", max_iter=3000).fit(_embed(model, texts), y)
    weight = torch.as_tensor(clf.coef_, dtype=torch.float32)
    init_from_logistic(model.head, weight, torch.as_tensor(clf.intercept_, dtype=torch.float32))


def _embed(model: TweetClassifier, texts: list[str], batch_size: int = 64) -> np.ndarray:
    from model_runner.data.cleaning import clean_text

    prepared = [clean_text(t) for t in texts]
    order = np.argsort([len(t) for t in prepared], kind="stable")
    out = np.zeros((len(prepared), model.encoder.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = model.tokenize([prepared[i] for i in idx])
            out[idx] = model.embed(batch["input_ids"], batch["attention_mask"]).numpy()
    return out


def _weights_mb(module: torch.nn.Module) -> float:
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return buffer.tell() / 2**20


def run(limit: int | None = None) -> None:
    settings = Settings()
    n_val = limit or 1000
    n_train = min(2000, 2 * n_val)
    t_start = time.perf_counter()
    model = _base_classifier(settings.encoder_max_length)
    train_texts = load_texts(TASK, "train", n_train)
    _fit_quick_head(model, train_texts, _labels("train", n_train))
    val_texts = load_texts(TASK, "validation", n_val)
    y_val = _labels("validation", n_val)
    int8 = quantize_int8(model)
    print(
        f"{len(val_texts)} validation tweets, quick head fitted on {len(train_texts)} train tweets, "
        f"torch threads {torch.get_num_threads()}, int8 method {METHOD}",
        flush=True,
    )

    # ONNX Runtime, both precisions, measured beside torch: fp32 is what an fp32 champion is served
    # with; its int8 (u8s8 MatMulInteger, per-channel weights) is shown to justify torch's int8.
    models = {
        "fp32": model,
        "int8": int8,
        "fp32 onnxruntime": to_onnx_runtime(model, int8=False),
        "int8 onnxruntime": to_onnx_runtime(model, int8=True),
    }
    for m in models.values():
        m.predict_proba(val_texts[:64])  # warm-up
    best = dict.fromkeys(models, float("inf"))
    proba = {}
    for _ in range(ROUNDS):
        for name, m in models.items():
            t0 = time.perf_counter()
            proba[name] = m.predict_proba(val_texts)
            best[name] = min(best[name], time.perf_counter() - t0)

    pred = {name: p.argmax(axis=1) for name, p in proba.items()}
    recall = {name: recall_score(y_val, p, average="macro") for name, p in pred.items()}
    agreement = float(np.mean(pred["fp32"] == pred["int8"]))
    tps = {name: len(val_texts) / best[name] for name in models}
    mb = {
        name: _weights_mb(m.encoder) if m.encoder is not None else float("nan") for name, m in models.items()
    }
    rows = [
        (
            name,
            f"{tps[name]:.0f}",
            f"{tps[name] / tps['fp32']:.2f}x",
            f"{np.mean(pred['fp32'] == pred[name]):.3f}",
            f"{recall[name]:.4f}",
            f"{mb[name]:.0f}",
        )
        for name in models
    ]
    print(table(rows, ("model", "texts/s", "ratio", "agreement", "macro recall", "encoder MB")))
    drop = recall["fp32"] - recall["int8"]
    accepted = drop <= settings.quant_max_drop and agreement >= settings.quant_min_agreement
    print(
        f"gate (drop <= {settings.quant_max_drop}, agreement >= {settings.quant_min_agreement}): "
        f"drop {drop:+.4f}, agreement {agreement:.3f} -> {'int8 served' if accepted else 'fp32 kept'}; "
        f"total {time.perf_counter() - t_start:.0f}s"
    )
