"""Adapters that train the encoder end to end from tokens: LoRA (low-rank updates) and full fine-tuning.

LoRA: low-rank updates to the encoder's attention and feed-forward weights.

Only the LoRA matrices and the head learn (about 1.5% of the parameters for rank 8 on all linear
layers), so the optimiser state is small and the result merges back into plain encoder weights:
serving a LoRA model costs exactly what serving the base model costs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from model_runner.encoder import pick_device
from model_runner.modeling.classifier import TweetClassifier
from model_runner.modeling.heads import build_head
from model_runner.training.clock import FitCallback, FitStep
from model_runner.training.fit_heads import class_weights, val_scores

EpochCallback = Callable[[int, int], None]


def length_bucketed_batches(
    lengths: Sequence[int], batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Shuffled batches of similar-length texts: little padding, still a random order of batches."""
    perm = rng.permutation(len(lengths))
    window = batch_size * 50
    batches = []
    for start in range(0, len(perm), window):
        chunk = sorted(perm[start : start + window], key=lambda i: lengths[i])
        batches += [np.array(chunk[i : i + batch_size]) for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def fit_lora(
    base_path: Path,
    texts: Sequence[str],
    y: np.ndarray,
    labels: Sequence[str],
    *,
    rank: int,
    alpha: int,
    dropout: float,
    target_modules: str,
    layers: str = "",
    **loop,
) -> TweetClassifier:
    """LoRA on ``target_modules`` (of ``layers``, or all blocks); ``loop``: see ``_fit_encoder``."""
    # lazy: CV worker processes import this module; head-only candidates never need peft/transformers
    from peft import LoraConfig, get_peft_model

    # ``layers`` limits LoRA to some transformer blocks: backward then stops at the lowest adapted
    # block, which is most of the cost of a training step on a CPU.
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules.split(","),
        layers_to_transform=[int(i) for i in layers.split(",")] if layers else None,
    )
    model = _fit_encoder(base_path, texts, y, labels, wrap=lambda enc: get_peft_model(enc, config), **loop)
    # Fold the low-rank updates into the base weights: a plain encoder for saving and serving.
    model.encoder = model.encoder.merge_and_unload()
    model.meta["lora"] = {
        "rank": rank,
        "alpha": alpha,
        "dropout": dropout,
        "target_modules": target_modules,
        "layers": layers or "all",
    }
    return model


def fit_finetune(
    base_path: Path, texts: Sequence[str], y: np.ndarray, labels: Sequence[str], **loop
) -> TweetClassifier:
    """Every encoder weight learns, with the head; ``loop``: see ``_fit_encoder``.

    On a CPU this costs what LoRA costs: backward traverses every layer either way, and the weight
    gradients LoRA skips are offset by its own extra matmuls (``make bench ARGS=training`` times one
    epoch of each: 0.98x). On a held-out fifth of train.jsonl it scored 0.716 macro recall against
    LoRA's 0.714 (rank 16, 3 epochs), and 0.650 against 0.638 on validation.jsonl. LoRA's edge is
    optimiser memory, which matters for large encoders on a GPU, not for a 22M-parameter one.
    """
    model = _fit_encoder(base_path, texts, y, labels, **loop)
    model.meta["finetune"] = {k: loop[k] for k in ("lr", "epochs", "weight_decay") if k in loop}
    return model


def _fit_encoder(
    base_path: Path,
    texts: Sequence[str],
    y: np.ndarray,
    labels: Sequence[str],
    *,
    lr: float,
    epochs: int,
    batch_size: int,
    weight_decay: float = 0.01,
    max_length: int = 128,
    seed: int = 0,
    device: str = "auto",
    init_head: nn.Module | None = None,
    on_epoch: EpochCallback | None = None,
    on_step: FitCallback | None = None,
    val: tuple[Sequence[str], np.ndarray] | None = None,
    should_stop: Callable[[], bool] | None = None,
    wrap: Callable[[nn.Module], nn.Module] | None = None,
    **_,
) -> TweetClassifier:
    """The base encoder (``wrap``-ped, e.g. with LoRA) plus ``init_head``, trained end to end; eval mode.

    ``on_step`` hears every batch; at each epoch's end it also gets the loss and macro recall on
    ``val`` (texts, labels) when given: one inference pass over those texts per epoch."""
    torch.manual_seed(seed)
    encoder, tokenizer = _load_base(base_path)
    if wrap is not None:
        encoder = wrap(encoder)
    model = _classifier(encoder, tokenizer, labels, init_head, max_length)
    _train_end_to_end(
        model,
        texts,
        y,
        lr=lr,
        epochs=epochs,
        batch_size=batch_size,
        weight_decay=weight_decay,
        seed=seed,
        device=device,
        on_epoch=on_epoch,
        on_step=on_step,
        val=val,
        should_stop=should_stop,
    )
    return model.eval().requires_grad_(False)


def _load_base(base_path: Path):
    from transformers import AutoModel, AutoTokenizer

    encoder = AutoModel.from_pretrained(base_path, use_safetensors=True)
    return encoder, AutoTokenizer.from_pretrained(base_path)


def _classifier(encoder, tokenizer, labels, init_head, max_length) -> TweetClassifier:
    hidden = encoder.config.hidden_size
    head = init_head if init_head is not None else build_head("linear", hidden, len(labels))
    return TweetClassifier(encoder, tokenizer, head.requires_grad_(True), labels, max_length=max_length)


def _train_end_to_end(
    model: TweetClassifier,
    texts: Sequence[str],
    y: np.ndarray,
    *,
    lr: float,
    epochs: int,
    batch_size: int,
    weight_decay: float,
    seed: int,
    device: str,
    on_epoch: EpochCallback | None,
    should_stop: Callable[[], bool] | None,
    on_step: FitCallback | None = None,
    val: tuple[Sequence[str], np.ndarray] | None = None,
) -> None:
    """Class-weighted cross-entropy, AdamW, one-cycle schedule, length-bucketed batches, bf16 on CUDA."""
    dev = pick_device(device)
    model.to(dev)
    class_w = class_weights(y, len(model.labels))
    weights = torch.as_tensor(class_w, dtype=torch.float32, device=dev)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    # bucket by token count, not characters: tweets' URLs and emoji make characters a poor proxy, and
    # padding is wasted forward and backward work
    token_ids = model.tokenizer(list(texts), truncation=True, max_length=model.max_length)["input_ids"]
    lengths = [len(ids) for ids in token_ids]
    steps = epochs * ((len(texts) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    labels_t = torch.as_tensor(y, dtype=torch.long)
    use_bf16 = dev.type == "cuda"
    for epoch in range(epochs):
        model.train()
        order = length_bucketed_batches(lengths, batch_size, rng)
        total = 0.0
        for b, idx in enumerate(order, start=1):
            if should_stop and should_stop():
                raise InterruptedError("training cancelled")
            batch = {k: v.to(dev) for k, v in model.tokenize([texts[i] for i in idx]).items()}
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
                logits = model(batch["input_ids"], batch["attention_mask"])
            loss = nn.functional.cross_entropy(logits.float(), labels_t[idx].to(dev), weight=weights)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
            if on_step and b < len(order):
                on_step(FitStep(epoch + 1, epochs, b, len(order), total / b))
        if on_step:
            scores = (None, None)
            if val is not None:
                model.eval()
                proba = model.predict_proba(val[0], clean=False)
                scores = val_scores(proba, np.asarray(val[1]), class_w)
            on_step(FitStep(epoch + 1, epochs, len(order), len(order), total / len(order), *scores))
        if on_epoch:
            on_epoch(epoch + 1, epochs)
