"""LoRA: low-rank updates to the encoder's attention and feed-forward weights, trained end to end.

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
from model_runner.training.fit_heads import class_weights

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
    lr: float,
    epochs: int,
    batch_size: int,
    target_modules: str,
    layers: str = "",
    max_length: int = 128,
    seed: int = 0,
    device: str = "auto",
    init_head: nn.Module | None = None,
    on_epoch: EpochCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    **_,
) -> TweetClassifier:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(seed)
    dev = pick_device(device)
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    encoder = AutoModel.from_pretrained(base_path, use_safetensors=True)
    # ``layers`` limits LoRA to some transformer blocks: backward then stops at the lowest adapted
    # block, which is most of the cost of a training step on a CPU.
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules.split(","),
        layers_to_transform=[int(i) for i in layers.split(",")] if layers else None,
    )
    peft_encoder = get_peft_model(encoder, config)
    head = (
        init_head if init_head is not None else build_head("linear", encoder.config.hidden_size, len(labels))
    )
    model = TweetClassifier(peft_encoder, tokenizer, head, labels, max_length=max_length).to(dev)

    weights = torch.as_tensor(class_weights(y, len(labels)), dtype=torch.float32, device=dev)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.01)
    rng = np.random.default_rng(seed)
    # bucket by token count, not characters: tweets' URLs and emoji make characters a poor proxy, and
    # padding is wasted forward and backward work
    token_ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    lengths = [len(ids) for ids in token_ids]
    steps = epochs * ((len(texts) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    labels_t = torch.as_tensor(y, dtype=torch.long)
    use_bf16 = dev.type == "cuda"
    for epoch in range(epochs):
        model.train()
        for idx in length_bucketed_batches(lengths, batch_size, rng):
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
        if on_epoch:
            on_epoch(epoch + 1, epochs)
    # Fold the low-rank updates into the base weights: a plain encoder for saving and serving.
    model.encoder = peft_encoder.merge_and_unload()
    model.meta["lora"] = {
        "rank": rank,
        "alpha": alpha,
        "dropout": dropout,
        "target_modules": target_modules,
        "layers": layers or "all",
    }
    return model.eval().requires_grad_(False)
