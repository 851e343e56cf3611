"""The portable export: tokenizer with clean_text built in, ONNX graph to logits, layout, registry job."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from model_runner.data.cleaning import clean_text
from model_runner.modeling.classifier import TweetClassifier, verify_files
from model_runner.modeling.export import NATIVE_DIR, ONNX_FILE, build_export, check_export, is_export
from model_runner.modeling.portable_tokenizer import build_charsmap, portable_tokenizer_json
from tests.conftest import shared_dataset

LABELS = ["negative", "neutral", "positive"]
# what clean_text changes, each kind of it, plus the cases its rules are careful about
TRICKY = [
    "I love it 😂😂",
    "ok👍🏽fine",  # skin tone: name of the sequence
    "family time 👨‍👩‍👧‍👦 and 🧑🏻‍💻 work",  # ZWJ sequences
    "go 🇺🇸🇨🇦 flags",
    "keycaps 1️⃣ #️⃣ and ©️ ™ ❤️",
    "stray selector x\ufe0f and ☺︎",
    "see https://t.co/abc?x=@y and www.example.com/a, but not awww.com",
    "HTTP://EXAMPLE.COM/X shouting, http:// alone",
    "mail me at a@b.com, @user_1 and @someone!",
    "medium.com/@name/post https://medium.com/@name/post",
    "tabs\tand\nnewlines   and  spaces",
    "",
    "ünïcödé Café 東京",
]


def _texts() -> list[str]:
    texts = []
    for name in ("tweet-sentiment", "tweet-emotion"):
        path = shared_dataset(name) / "validation.jsonl"
        texts += [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]
    return texts


@pytest.fixture(scope="module")
def base_tokenizer(tiny_bert) -> dict:
    return json.loads((tiny_bert / "tokenizer.json").read_text(encoding="utf-8"))


def _ids(tokenizer, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in tokenizer.encode_batch(texts)]


def test_tokenizer_cleans_like_clean_text(base_tokenizer):
    from tokenizers import Tokenizer

    portable = Tokenizer.from_str(json.dumps(portable_tokenizer_json(base_tokenizer, 128)))
    plain = Tokenizer.from_str(json.dumps(base_tokenizer))
    plain.no_padding()
    plain.enable_truncation(128)

    assert _ids(portable, TRICKY) == _ids(plain, [clean_text(t) for t in TRICKY])
    texts = _texts()
    expected = _ids(plain, [clean_text(t) for t in texts])
    same = sum(a == b for a, b in zip(_ids(portable, texts), expected, strict=True))
    # measured: 2374/2374 (and 12541/12541 on the train splits)
    assert same / len(texts) >= 0.999, f"{same}/{len(texts)}"


def test_tokenizer_truncates_at_max_length(base_tokenizer):
    from tokenizers import Tokenizer

    portable = Tokenizer.from_str(json.dumps(portable_tokenizer_json(base_tokenizer, 16)))
    assert len(portable.encode("word " * 100).ids) == 16
    assert portable.padding is None


def test_charsmap_rewrites_each_key():
    from tokenizers import normalizers

    mapping = {"😂": " joy ", "é": "e", "東": "east", "#⃣": " keycap # "}
    normalizer = normalizers.Precompiled(build_charsmap(mapping))
    assert normalizer.normalize_str("a😂b é 東 #⃣ plain") == "a joy b e east  keycap #  plain"
    assert normalizer.normalize_str("nothing to do") == "nothing to do"


def _classifier(tiny_bert: Path, kind: str = "linear", seed: int = 0) -> TweetClassifier:
    from transformers import AutoModel, AutoTokenizer

    from model_runner.modeling.heads import build_head

    torch.manual_seed(seed)
    encoder = AutoModel.from_pretrained(tiny_bert)
    head = build_head(kind, encoder.config.hidden_size, len(LABELS), hidden=16)
    with torch.no_grad():  # a random head on a random encoder is near-uniform: spread the logits
        for p in head.parameters():
            p.mul_(20)
    meta = {"task": "sentiment", "base_model": {"id": "sentence-transformers/all-MiniLM-L6-v2"}}
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    return TweetClassifier(encoder, tokenizer, head, LABELS, max_length=24, meta=meta).eval()


@pytest.fixture(scope="module")
def exported(tiny_bert, tmp_path_factory) -> tuple[TweetClassifier, Path, Path]:
    root = tmp_path_factory.mktemp("export")
    model = _classifier(tiny_bert, "mlp")
    native = model.save(root / "native")
    return model, native, build_export(native, root / "export", card="# card\n", version="4")


def test_layout(exported):
    _, native, out = exported
    assert is_export(out) and not is_export(native)
    root = {p.name for p in out.iterdir() if p.is_file()}
    assert {"config.json", ONNX_FILE, "tokenizer.json", "tokenizer_config.json", "README.md"} <= root
    assert "model.safetensors" not in root, "transformers would load the bare encoder with a random head"
    native_files = {p.name: p.read_bytes() for p in native.iterdir()}
    assert {p.name: p.read_bytes() for p in (out / NATIVE_DIR).iterdir()} == native_files
    verify_files(out / NATIVE_DIR)


def test_config_and_tokenizer_config(exported):
    model, _, out = exported
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "bert" and config["architectures"] == ["BertForSequenceClassification"]
    assert config["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    assert config["label2id"] == {"negative": 0, "neutral": 1, "positive": 2}
    assert config["problem_type"] == "single_label_classification"
    block = config["tweetpulse"]
    assert (block["task"], block["version"], block["labels"]) == ("sentiment", "4", LABELS)
    assert block["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert json.loads((out / "tokenizer_config.json").read_text())["model_max_length"] == model.max_length


def test_onnx_graph_is_the_whole_model_to_logits(exported):
    import onnxruntime as ort

    model, _, out = exported
    session = ort.InferenceSession(str(out / ONNX_FILE), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    batch = model.tokenize([clean_text(t) for t in TRICKY])  # a padded batch of several lengths
    logits = session.run(["logits"], {k: batch[k].numpy() for k in ("input_ids", "attention_mask")})[0]
    with torch.no_grad():
        expected = model(batch["input_ids"], batch["attention_mask"]).numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    assert check_export(out, model, TRICKY) < 1e-4


def test_transformers_tokenizer_of_the_export_cleans_and_truncates(exported):
    from transformers import AutoTokenizer

    model, _, out = exported
    tokenizer = AutoTokenizer.from_pretrained(out)
    texts = [*TRICKY, "long " * 100]
    got = tokenizer(texts, truncation=True)["input_ids"]
    expected = model.tokenizer([clean_text(t) for t in texts], truncation=True, max_length=model.max_length)
    assert got == expected["input_ids"]
    assert len(got[-1]) == model.max_length


def test_an_altered_native_folder_is_not_exported(exported, tmp_path):
    _, native, _ = exported
    copy = Path(shutil.copytree(native, tmp_path / "native"))
    (copy / "head.safetensors").write_bytes(b"not the trained head")
    with pytest.raises(ValueError, match=r"head\.safetensors"):
        build_export(copy, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_export_that_fails_its_check_leaves_nothing(exported, tmp_path, monkeypatch):
    from model_runner.modeling import export

    _, native, _ = exported

    def differs(*args, **kwargs):
        raise ValueError("the export differs from the torch model by 0.5 in probability")

    monkeypatch.setattr(export, "check_export", differs)
    with pytest.raises(ValueError, match="differs"):
        build_export(native, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_output_must_be_empty(exported, tmp_path):
    _, native, _ = exported
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        build_export(native, tmp_path / "out")


# --- model-runner export: from the registry ----------------------------------------------------------


@pytest.fixture(scope="module")
def registry_settings(exported, tmp_path_factory):
    """A sqlite MLflow registry with sentiment v1 (the champion, gated) and v2 (not promoted)."""
    import mlflow

    from model_runner.registry import ModelRegistry
    from model_runner.registry.integrity import GATE_PASSED, GATE_TAG
    from model_runner.settings import Settings
    from tests.registry.conftest import Store, active_run

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    experiment = mlflow.MlflowClient(uri).create_experiment("export", artifact_location=(root / "a").as_uri())
    prefix = f"t{uuid.uuid4().hex[:8]}"
    registry = ModelRegistry(uri, name_prefix=prefix)
    _, native, _ = exported
    other = _classifier(Path(native), "linear", seed=3)  # the native folder holds a loadable encoder
    other_folder = other.save(root / "other")
    with active_run(Store(uri=uri, experiment_id=experiment, root=root)):
        mlflow.log_metrics({"macro_recall": 0.61, "macro_f1": 0.6, "accuracy": 0.65})
        # the evaluation report holds the bootstrap CIs, which MLflow metrics cannot
        mlflow.log_dict({"macro_recall_ci": [0.58, 0.64], "labels": ["a"]}, "evaluation/report.json")
        v1 = registry.log_and_register(native, task="sentiment", input_example=["a"])
        registry.log_and_register(other_folder, task="sentiment", input_example=["a"])
    registry.set_tags("sentiment", v1.version, {GATE_TAG: GATE_PASSED})
    registry.promote("sentiment", v1.version)
    settings = Settings(home=root / "home", mlflow_tracking_uri=uri, registry_prefix=prefix, device="cpu")
    return settings, other


def test_export_model_writes_the_champion_with_its_card(registry_settings, exported, tmp_path):
    from model_runner.hub.card import extract_usage
    from model_runner.jobs.export import export_model

    settings, _ = registry_settings
    _, native, _ = exported
    result = export_model(settings, "sentiment", None, tmp_path / "out")

    assert result.version == "1" and result.output == tmp_path / "out"
    assert "model.onnx" in result.files and "tweetpulse/checksums.json" in result.files
    assert (tmp_path / "out" / NATIVE_DIR / "head.safetensors").read_bytes() == (
        native / "head.safetensors"
    ).read_bytes()
    card = (tmp_path / "out" / "README.md").read_text()
    assert "| Macro recall (primary) | 0.6100 | [0.5800, 0.6400] |" in card and "Model version: `1`" in card
    # no Hub configured: the card's code loads the folder itself
    assert result.card_repo == str((tmp_path / "out").resolve())
    assert f'from_pretrained("{result.card_repo}")' in extract_usage(card)
    assert json.loads((tmp_path / "out" / "config.json").read_text())["tweetpulse"]["version"] == "1"


def test_export_model_of_an_explicit_version(registry_settings, tmp_path):
    from model_runner.jobs.export import export_model

    settings, other = registry_settings
    result = export_model(settings, "sentiment", "2", tmp_path / "v2")
    assert result.version == "2"
    assert check_export(tmp_path / "v2", other, TRICKY) < 1e-4

    from model_runner.registry import ModelNotFoundError

    with pytest.raises(ModelNotFoundError):
        export_model(settings, "sentiment", "9", tmp_path / "v9")
    with pytest.raises(FileExistsError):
        export_model(settings, "sentiment", "2", tmp_path / "v2")
