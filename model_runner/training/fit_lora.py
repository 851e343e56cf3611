"""Adapters that train the encoder end to end from tokens: LoRA (low-rank updates) and full fine-tuning.

LoRA: low-rank updates to the encoder's attention and feed-forward weights.

Only the LoRA matrices and the head learn (about 1.5% of the parameters for rank 8 on all linear
layers), so the optimiser state is small and the result merges back into plain encoder weights:
serving a LoRA model costs exactly what serving the base model costs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True, eq=False)
class Distillation:
    """What a student learns from besides its labels: the teacher's logits for each labelled text (in
    the order of the texts), and texts with no label at all that it learns from the teacher alone."""

    logits: np.ndarray  # (labelled rows, classes)
    alpha: float = 0.5  # weight of the distillation term; 1 - alpha goes to the labels
    temperature: float = 2.0
    unlabelled_texts: Sequence[str] = ()
    unlabelled_logits: np.ndarray | None = None

    def all_logits(self) -> np.ndarray:
        if not len(self.unlabelled_texts):
            return np.asarray(self.logits, dtype=np.float32)
        return np.concatenate([self.logits, self.unlabelled_logits]).astype(np.float32)


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
    teacher = loop.get("teacher")
    if teacher is not None:
        model.meta["distill"] = {
            "alpha": teacher.alpha,
            "temperature": teacher.temperature,
            "labelled_rows": len(teacher.logits),
            "unlabelled_rows": len(teacher.unlabelled_texts),
        }
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
    teacher: Distillation | None = None,
    head_lr: float | None = None,
    precision: str = "fp32",
    **_,
) -> TweetClassifier:
    """The base encoder (``wrap``-ped, e.g. with LoRA) plus ``init_head``, trained end to end; eval mode.

    ``on_step`` hears every batch; at each epoch's end it also gets the loss and macro recall on
    ``val`` (texts, labels) when given: one inference pass over those texts per epoch. ``teacher``:
    soft targets to distil from (see ``Distillation``); ``head_lr``: the head's own learning rate (a
    head that starts random learns far slower than the encoder at a fine-tuning rate); ``precision``:
    "bf16" trains under bf16 autocast; "auto" measures which is faster here (``training.precision``).
    """
    torch.manual_seed(seed)
    encoder, tokenizer = _load_base(base_path)
    if wrap is not None:
        encoder = wrap(encoder)
    model = _classifier(encoder, tokenizer, labels, init_head, max_length)
    if precision == "auto":
        from model_runner.training.precision import pick_precision

        model.to(pick_device(device)).train()
        choice = pick_precision(model, texts, pick_device(device))
        precision = choice.precision
        model.meta["training_precision"] = {"precision": precision, "reason": choice.reason}
    _train_end_to_end(
        model,
        texts,
        y,
        teacher=teacher,
        head_lr=head_lr,
        precision=precision,
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
    teacher: Distillation | None = None,
    head_lr: float | None = None,
    precision: str = "fp32",
) -> None:
    """Class-weighted cross-entropy (plus distillation when ``teacher`` is given), AdamW, one-cycle
    schedule, length-bucketed batches; bf16 autocast on CUDA, and on a CPU when ``precision`` says so.

    With a teacher the rows are the labelled ``texts`` followed by the teacher's unlabelled texts
    (label -1): each batch's loss is ``(1 - alpha) * CE`` on its labelled rows plus
    ``alpha * T^2 * KL(teacher_T || student_T)`` on all its rows (Hinton et al. 2015), so unlabelled
    tweets teach through the teacher's soft labels only.
    """
    dev = pick_device(device)
    model.to(dev)
    class_w = class_weights(y, len(model.labels))
    weights = torch.as_tensor(class_w, dtype=torch.float32, device=dev)
    all_texts, all_y, soft = list(texts), np.asarray(y, dtype=np.int64), None
    if teacher is not None:
        all_texts += list(teacher.unlabelled_texts)
        all_y = np.concatenate([all_y, np.full(len(teacher.unlabelled_texts), -1, dtype=np.int64)])
        soft = torch.as_tensor(teacher.all_logits(), dtype=torch.float32)
    head_params = {id(p) for p in model.head.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if id(p) not in head_params], "lr": lr},
        {"params": [p for p in trainable if id(p) in head_params], "lr": head_lr or lr},
    ]
    groups = [g for g in groups if g["params"]]
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    # bucket by token count, not characters: tweets' URLs and emoji make characters a poor proxy, and
    # padding is wasted forward and backward work
    token_ids = model.tokenizer(all_texts, truncation=True, max_length=model.max_length)["input_ids"]
    lengths = [len(ids) for ids in token_ids]
    steps = epochs * ((len(all_texts) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=[g["lr"] for g in groups], total_steps=steps, pct_start=0.1
    )
    labels_t = torch.as_tensor(all_y, dtype=torch.long)
    use_bf16 = dev.type == "cuda" or precision == "bf16"
    for epoch in range(epochs):
        model.train()
        order = length_bucketed_batches(lengths, batch_size, rng)
        total = 0.0
        for b, idx in enumerate(order, start=1):
            if should_stop and should_stop():
                raise InterruptedError("training cancelled")
            batch = {k: v.to(dev) for k, v in model.tokenize([all_texts[i] for i in idx]).items()}
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
                logits = model(batch["input_ids"], batch["attention_mask"])
            target = labels_t[idx].to(dev)
            targets_soft = soft[idx].to(dev) if soft is not None else None
            loss = _loss(logits.float(), target, weights, targets_soft, teacher)
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


def _loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor,
    soft: torch.Tensor | None,
    teacher: Distillation | None,
) -> torch.Tensor:
    labelled = target >= 0
    ce = (
        nn.functional.cross_entropy(logits[labelled], target[labelled], weight=weights)
        if bool(labelled.any())
        else logits.sum() * 0.0
    )
    if soft is None or teacher is None:
        return ce
    t = teacher.temperature
    kd = nn.functional.kl_div(
        nn.functional.log_softmax(logits / t, dim=-1),
        nn.functional.log_softmax(soft / t, dim=-1),
        log_target=True,
        reduction="batchmean",
    ) * (t * t)
    return (1.0 - teacher.alpha) * ce + teacher.alpha * kd
