"""The portable export of a saved TweetClassifier: one folder that a plain client loads in one call.

Layout (the Hub repo is exactly this folder)::

    config.json                 the encoder's config + id2label/label2id, problem_type, a "tweetpulse" block
    model.onnx                  the whole model (encoder, mean pooling, L2 norm, head): input_ids +
                                attention_mask -> logits, dynamic batch and sequence axes
    tokenizer.json              the encoder's tokenizer with clean_text in its normalizer
                                (see portable_tokenizer.py), truncating at the model's max_length
    tokenizer_config.json       model_max_length = max_length, so truncation=True cuts where /inference does
    special_tokens_map.json
    vocab.txt                   when the native folder has one
    README.md                   the model card (when one is given)
    tweetpulse/                 the native folder exactly as TweetClassifier.save wrote it (checksums.json
                                included): what the service serves from the Hub

There is deliberately no model.safetensors at the root: transformers would load the bare encoder from
it with a randomly initialised classification head and label silently wrong.

Loaded with optimum's ``ORTModelForSequenceClassification`` (onnxruntime) into a transformers
``pipeline("text-classification")``; the ONNX graph and the tokenizer are checked against the torch
model on ``serving.CANARY_TEXTS`` plus tweet-like texts before the folder is declared done.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from model_runner.modeling.classifier import CONFIG_FILE, TweetClassifier, verify_files
from model_runner.modeling.portable_tokenizer import portable_tokenizer_json

NATIVE_DIR = "tweetpulse"
ONNX_FILE = "model.onnx"
README = "README.md"
# what the root of an export holds (README.md only when a card was given)
ROOT_FILES = (
    "config.json",
    ONNX_FILE,
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    README,
)
# the export must reproduce the torch model's probabilities within float noise
MAX_PROB_DIFF = 1e-3
_CHECK_TEXTS = (
    "what a great day! 😂😂 @friend https://t.co/abc",
    "worst. service. ever. 👎🏽 #fail www.example.com/x",
    "Heading to the 🇺🇸 game with my 👨‍👩‍👧 tomorrow 1️⃣",
)
_SPECIAL = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def is_export(folder: Path) -> bool:
    folder = Path(folder)
    return (folder / ONNX_FILE).is_file() and (folder / NATIVE_DIR / CONFIG_FILE).is_file()


def _portable_config(native: Path, model: TweetClassifier, version: str | None) -> dict[str, Any]:
    config = json.loads((native / "config.json").read_text())
    for key in ("_name_or_path", "architectures", "id2label", "label2id", "problem_type", "num_labels"):
        config.pop(key, None)
    labels = model.labels
    meta = model.meta
    base = meta.get("base_model")
    config.update(
        {
            # what the graph computes, in transformers' vocabulary: a sequence classifier on a BERT encoder
            "architectures": [
                f"{type(model.encoder).__name__.removesuffix('Model')}ForSequenceClassification"
            ],
            "id2label": {str(i): name for i, name in enumerate(labels)},
            "label2id": {name: i for i, name in enumerate(labels)},
            "problem_type": "single_label_classification",
            "tweetpulse": {
                "task": meta.get("task"),
                "version": version,
                "base_model": base.get("id") if isinstance(base, dict) else base,
                "labels": labels,
                "max_length": model.max_length,
                "pooling": "mean+l2",
                "onnx_outputs": ["logits"],
                "text_cleaning": "clean_text in tokenizer.json's normalizer",
            },
        }
    )
    return config


def _tokenizer_files(native: Path, out: Path, model: TweetClassifier) -> None:
    base = json.loads((native / "tokenizer.json").read_text(encoding="utf-8"))
    portable = portable_tokenizer_json(base, model.max_length)
    (out / "tokenizer.json").write_text(json.dumps(portable, ensure_ascii=False, indent=1), encoding="utf-8")
    tok = model.tokenizer
    special = {name: str(getattr(tok, name)) for name in _SPECIAL if getattr(tok, name, None) is not None}
    # written here, not by save_pretrained: transformers 5 and 4.x disagree on this file's keys (the client
    # runs transformers 4.57, optimum-onnx's pin), and a model-specific class (BertTokenizer) makes
    # transformers 5 rebuild the normalizer from its own arguments, dropping the cleaning: the generic
    # fast tokenizer takes tokenizer.json as it is in both
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "do_lower_case": bool(getattr(tok, "do_lower_case", True)),
        "model_max_length": model.max_length,
        "clean_up_tokenization_spaces": False,
        "padding_side": "right",
        "truncation_side": "right",
        **special,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    if (native / "vocab.txt").is_file():
        shutil.copy2(native / "vocab.txt", out / "vocab.txt")


def check_export(out: Path, model: TweetClassifier, texts: list[str] | None = None) -> float:
    """Largest class-probability difference between the export (its own tokenizer on the raw texts,
    ONNX Runtime) and ``model.predict_proba`` (clean_text + torch); raises when above MAX_PROB_DIFF."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    from model_runner.modeling.serving import CANARY_TEXTS

    texts = list(texts or [*CANARY_TEXTS, *_CHECK_TEXTS])
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    session = ort.InferenceSession(str(out / ONNX_FILE), providers=["CPUExecutionProvider"])
    got = []
    for text in texts:
        enc = tokenizer.encode(text)
        feeds = {
            "input_ids": np.array([enc.ids], dtype=np.int64),
            "attention_mask": np.array([enc.attention_mask], dtype=np.int64),
        }
        logits = session.run(["logits"], feeds)[0][0]
        exp = np.exp(logits - logits.max())
        got.append(exp / exp.sum())
    diff = float(np.abs(np.array(got) - model.predict_proba(texts)).max())
    if diff > MAX_PROB_DIFF:
        raise ValueError(f"the export differs from the torch model by {diff:.3g} in probability")
    return diff


def build_export(
    native: Path | str, out: Path | str, *, card: str | None = None, version: str | None = None
) -> Path:
    """Write the portable folder for the saved model in ``native`` to ``out`` (must not exist or be
    empty) and return ``out``. ``card``: README.md text; ``version``: the registry version, recorded in
    config.json. The native folder is verified first and copied byte for byte to ``out/tweetpulse``;
    an export that fails its check (``check_export``) leaves ``out`` empty."""
    from model_runner.modeling.onnx_backend import export_onnx

    native, out = Path(native), Path(out)
    verify_files(native)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty")
    out.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copytree(native, out / NATIVE_DIR)
        verify_files(out / NATIVE_DIR)
        model = TweetClassifier.load(out / NATIVE_DIR)  # fp32, as saved: the export is the validated weights
        export_onnx(model, out / ONNX_FILE)
        (out / "config.json").write_text(json.dumps(_portable_config(native, model, version), indent=2))
        _tokenizer_files(native, out, model)
        if card is not None:
            (out / README).write_text(card, encoding="utf-8")
        check_export(out, model)
    except BaseException:
        # no half-written export is left behind to be mistaken for a good one
        for child in out.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        raise
    return out
