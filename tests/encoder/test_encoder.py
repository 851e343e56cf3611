import numpy as np
import pytest

from model_runner.encoder import FrozenEncoder, resolve_model
from model_runner.settings import DEFAULT_ENCODER_ID

from ..conftest import shared_dataset


def test_embeddings_are_unit_length_and_order_independent(tiny_encoder):
    texts = ["short", "a much longer tweet about the weather and the trains today", "mid length text"]
    out = tiny_encoder.encode(texts)
    assert out.shape == (3, tiny_encoder.dim) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    # batching sorts by length internally; results must still follow input order
    np.testing.assert_allclose(tiny_encoder.encode(texts[::-1])[::-1], out, atol=1e-5)
    np.testing.assert_allclose(tiny_encoder.encode([texts[1]])[0], out[1], atol=1e-5)


def test_padding_does_not_change_an_embedding(tiny_bert):
    enc = FrozenEncoder(str(tiny_bert), device="cpu", batch_size=8)
    alone = enc.encode(["hi"])[0]
    padded = enc.encode(["hi", "this text is far longer so 'hi' gets padded in the batch"])[0]
    np.testing.assert_allclose(alone, padded, atol=1e-5)


def test_local_folder_revision_is_a_content_hash(tiny_bert):
    resolved = resolve_model(str(tiny_bert))
    assert resolved.path == tiny_bert.resolve()
    assert resolved.revision.startswith("sha256:")
    assert resolve_model(str(tiny_bert)).revision == resolved.revision


def test_default_id_resolves_offline_to_the_bundled_weights(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    resolved = resolve_model(DEFAULT_ENCODER_ID)
    assert resolved.model_id == DEFAULT_ENCODER_ID
    assert (resolved.path / "model.safetensors").exists()


def test_unknown_hub_id_offline_fails_with_a_clear_error(monkeypatch):
    from model_runner.encoder import EncoderNotFoundError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EncoderNotFoundError, match="no-such/model"):
        resolve_model("no-such/model")


@pytest.mark.slow
def test_real_base_model_matches_sentence_transformers_on_real_tweets():
    import json

    sentence_transformers = pytest.importorskip("sentence_transformers")
    path = shared_dataset("tweet-sentiment") / "validation.jsonl"
    texts = [json.loads(line)["text"] for line in path.read_text().splitlines()[:64]]
    enc = FrozenEncoder(DEFAULT_ENCODER_ID, device="cpu")
    ours = enc.encode(texts)
    reference = sentence_transformers.SentenceTransformer(str(enc.resolved.path), device="cpu").encode(
        texts, normalize_embeddings=True
    )
    cosine = (ours * reference).sum(axis=1)
    assert cosine.min() > 0.999
    assert enc.dim == 384
