"""The deployable model: a (possibly LoRA-tuned) encoder, mean pooling, a head and its label map.

On disk it is one self-contained folder in Hugging Face format plus three small files, loaded from
safetensors only (no pickle):

    config.json, model.safetensors, tokenizer files   the encoder (LoRA merged into its weights)
    head.safetensors                                  the classification head
    label_map.json                                    id2label / label2id
    tweetpulse.json                                   adapter config, labels, max length, serving choice
    probe.json (optional)                             held-out texts + labels that runtimes are checked on

This module is persistence and inference only. How a folder is served (fp32 torch, int8, ONNX Runtime)
is decided in ``modeling/serving.py``: the int8 variant is not stored (dynamic quantization is a
deterministic function of the fp32 weights), ``tweetpulse.json`` records the choice and
``load_for_serving`` re-applies it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from model_runner.data.cleaning import clean_text
from model_runner.encoder.encoder import mean_pool
from model_runner.modeling.heads import build_head, head_spec

FORMAT_VERSION = 1
CONFIG_FILE = "tweetpulse.json"
CHECKSUMS_FILE = "checksums.json"
# Held-out evaluation texts (and labels) the model was scored on, written by training: at load, every
# candidate runtime answers them to prove it agrees with fp32 (``runtimes``). Optional: older folders
# have none and are probed on the canaries only, so it is not among REQUIRED_FILES.
PROBE_FILE = "probe.json"
REQUIRED_FILES = ("config.json", "model.safetensors", "head.safetensors", "label_map.json", CONFIG_FILE)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_checksums(folder: Path) -> None:
    """A manifest of every file so a copy (registry download, Hub) can be verified before it is served."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name != CHECKSUMS_FILE)
    manifest = {p.name: file_sha256(p) for p in files}
    (folder / CHECKSUMS_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True))


def verify_files(folder: Path) -> None:
    """Raise ``ValueError`` naming the problem when a model folder is incomplete or was altered."""
    folder = Path(folder)
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise ValueError(f"model folder {folder.name} lacks {', '.join(missing)}")
    manifest_path = folder / CHECKSUMS_FILE
    if not manifest_path.is_file():
        raise ValueError(f"model folder {folder.name} has no {CHECKSUMS_FILE}")
    manifest = json.loads(manifest_path.read_text())
    for name, expected in manifest.items():
        path = folder / name
        if not path.is_file():
            raise ValueError(f"model file {name} listed in {CHECKSUMS_FILE} is missing")
        if file_sha256(path) != expected:
            raise ValueError(f"model file {name} does not match its sha256 in {CHECKSUMS_FILE}")


class TweetClassifier(nn.Module):
    def __init__(
        self,
        encoder: nn.Module,
        tokenizer,
        head: nn.Module,
        labels: Sequence[str],
        *,
        max_length: int = 128,
        meta: dict[str, Any] | None = None,
        probe: dict[str, list] | None = None,
    ):
        super().__init__()
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.head = head
        self.labels = list(labels)
        self.max_length = max_length
        self.meta: dict[str, Any] = dict(meta or {})
        # {"texts": [...], "labels": [...]}: held-out rows for checking serving runtimes (PROBE_FILE)
        self.probe: dict[str, list] | None = probe

    # --- inference ---------------------------------------------------------------------------------
    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return nn.functional.normalize(mean_pool(hidden.float(), attention_mask), dim=-1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(input_ids, attention_mask))

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )

    @torch.inference_mode()
    def predict_proba(self, texts: Sequence[str], *, batch_size: int = 64, clean: bool = True) -> np.ndarray:
        """Class probabilities for ``texts`` in input order (batched by similar length)."""
        return self.predict_with_truncation(texts, batch_size=batch_size, clean=clean)[0]

    @torch.inference_mode()
    def predict_with_truncation(
        self, texts: Sequence[str], *, batch_size: int = 64, clean: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities plus, per text, whether it was cut to ``max_length`` tokens.

        All texts are tokenized in one call (the fast tokenizer is parallel and cheap), then forward
        passes take them in order of token count: each pass pads to its own longest text. Sorting by
        tokens rather than characters matters: on tweets (URLs, emoji, hashtags) it cuts the padded
        length of 64-text passes from ~43 to ~32 tokens, a third of the encoder's work.
        """
        self.eval()
        device = next(self.head.parameters()).device
        prepared = [clean_text(t) for t in texts] if clean else list(texts)
        out = np.zeros((len(prepared), len(self.labels)), dtype=np.float32)
        truncated = np.zeros(len(prepared), dtype=bool)
        if not prepared:
            return out, truncated
        encoded = self.tokenizer(prepared, truncation=True, max_length=self.max_length)
        if encoded.encodings:  # fast tokenizers keep what truncation cut off
            truncated[:] = [bool(e.overflowing) for e in encoded.encodings]
        ids = encoded["input_ids"]
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        order = np.argsort(lengths, kind="stable")
        pad_id = self.tokenizer.pad_token_id or 0
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(int(lengths[idx].max()), 1)
            input_ids = np.full((len(idx), width), pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                input_ids[row, : lengths[i]] = ids[i]
                mask[row, : lengths[i]] = 1
            logits = self(torch.from_numpy(input_ids).to(device), torch.from_numpy(mask).to(device))
            out[idx] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return out, truncated

    def predict(self, texts: Sequence[str], **kwargs) -> list[str]:
        return [self.labels[i] for i in self.predict_proba(texts, **kwargs).argmax(axis=1)]

    # --- persistence -------------------------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()},
            folder / "head.safetensors",
        )
        label_map = {
            "id2label": dict(enumerate(self.labels)),
            "label2id": {n: i for i, n in enumerate(self.labels)},
        }
        (folder / "label_map.json").write_text(json.dumps(label_map, indent=2))
        config = {
            **self.meta,
            "format": FORMAT_VERSION,
            "labels": self.labels,
            "max_length": self.max_length,
            "pooling": "mean+l2",
            "head": head_spec(self.head),
        }
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
        probe_path = folder / PROBE_FILE
        if self.probe is not None:
            probe = {"texts": list(self.probe.get("texts", []))}
            if self.probe.get("labels") is not None:
                probe["labels"] = [_plain(v) for v in self.probe["labels"]]
            probe_path.write_text(json.dumps(probe, ensure_ascii=False))
        else:
            probe_path.unlink(missing_ok=True)  # a stale probe of an earlier save would be checksummed
        write_checksums(folder)
        return folder

    @classmethod
    def load(cls, folder: Path, *, device: str | torch.device = "cpu") -> TweetClassifier:
        """The fp32 model saved in ``folder``, as saved (``serving.load_for_serving`` serves it)."""
        # lazy: the service imports this module at start-up; transformers loads with the first model
        from transformers import AutoModel, AutoTokenizer

        folder = Path(folder)
        config = json.loads((folder / CONFIG_FILE).read_text())
        if config.get("format") != FORMAT_VERSION:
            raise ValueError(f"{folder}: unsupported model format {config.get('format')!r}")
        encoder = AutoModel.from_pretrained(folder, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        spec = dict(config["head"])
        head = build_head(spec.pop("kind"), int(encoder.config.hidden_size), len(config["labels"]), **spec)
        head.load_state_dict(load_file(folder / "head.safetensors"))
        meta = {
            k: v for k, v in config.items() if k not in {"format", "labels", "max_length", "pooling", "head"}
        }
        probe = json.loads((folder / PROBE_FILE).read_text()) if (folder / PROBE_FILE).is_file() else None
        model = cls(
            encoder,
            tokenizer,
            head,
            config["labels"],
            max_length=config["max_length"],
            meta=meta,
            probe=probe,
        )
        model.eval().requires_grad_(False).to(device)
        return model


def _plain(value: Any) -> Any:
    """A label as JSON holds it (numpy integers and strings from an evaluation split included)."""
    return value.item() if isinstance(value, np.generic) else value
