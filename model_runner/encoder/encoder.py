"""The frozen base model: texts in, L2-normalised mean-pooled embeddings out."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from model_runner.encoder.resolve import ResolvedModel, resolve_model

log = logging.getLogger(__name__)


def pick_device(preference: str = "auto") -> torch.device:
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the token vectors, padding excluded (sentence-transformers' pooling)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


class FrozenEncoder:
    """A Hugging Face encoder used read-only; ``texts_encoded`` counts real work for cache checks."""

    def __init__(
        self,
        model_id: str,
        revision: str | None = None,
        *,
        device: str = "auto",
        max_length: int = 128,
        batch_size: int = 64,
    ):
        # lazy: the service imports this module at start-up; transformers loads with the first encoder
        from transformers import AutoModel, AutoTokenizer

        self.resolved: ResolvedModel = resolve_model(model_id, revision)
        self.device = pick_device(device)
        self.max_length = max_length
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(self.resolved.path)
        # safetensors only: a pickled checkpoint from an untrusted place could run code on load
        self.model = AutoModel.from_pretrained(self.resolved.path, use_safetensors=True)
        self.model.to(self.device).eval().requires_grad_(False)
        self.dim = int(self.model.config.hidden_size)
        self.texts_encoded = 0
        log.info("encoder %s@%s on %s (dim %d)", self.encoder_id, self.revision, self.device, self.dim)

    @property
    def encoder_id(self) -> str:
        return self.resolved.model_id

    @property
    def revision(self) -> str:
        return self.resolved.revision

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Embeddings (float32, unit length) in the order of ``texts``.

        Batches are formed from texts of similar length so padding wastes little compute.
        """
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        order = np.argsort([len(t) for t in texts], kind="stable")
        bar = tqdm(total=len(texts), desc="embedding", unit="text", disable=not progress)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                batch = {k: v.to(self.device) for k, v in self.tokenize([texts[i] for i in idx]).items()}
                with torch.autocast(
                    self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"
                ):
                    hidden = self.model(**batch).last_hidden_state
                pooled = torch.nn.functional.normalize(
                    mean_pool(hidden.float(), batch["attention_mask"]), dim=-1
                )
                out[idx] = pooled.cpu().numpy()
                bar.update(len(idx))
        bar.close()
        self.texts_encoded += len(texts)
        return out
