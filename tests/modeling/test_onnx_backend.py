import numpy as np
import pytest
import torch

from model_runner.modeling.classifier import TweetClassifier
from model_runner.modeling.heads import build_head
from model_runner.modeling.onnx_backend import METHOD_FP32, OnnxTweetClassifier, to_onnx_runtime

LABELS = ["anger", "joy", "optimism", "sadness"]
# very different token counts, so every pass mixes padded and unpadded rows
TEXTS = [
    "ok",
    "i love this phone so much, best purchase of the year by far",
    "the train is late again",
    "",
    "what a great day at the beach with friends and family and the dog " * 3,
    "meh",
    "@user thanks for the help! http",
]


@pytest.fixture
def model(tiny_bert):
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(1)
    encoder = AutoModel.from_pretrained(tiny_bert, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    head = build_head("mlp", 32, len(LABELS), hidden=16, dropout=0.0)
    clf = TweetClassifier(encoder, tokenizer, head, LABELS, max_length=32, meta={"adapter": "mlp"})
    return clf.eval().requires_grad_(False)


def test_onnx_twin_matches_torch_on_padded_batches(model):
    twin = to_onnx_runtime(model, int8=False, threads=1)
    assert isinstance(twin, OnnxTweetClassifier)
    assert twin.meta["runtime"] == METHOD_FP32 and twin.labels == LABELS
    for batch_size in (1, 3, 64):
        expected = model.predict_proba(TEXTS, batch_size=batch_size)
        got = twin.predict_proba(TEXTS, batch_size=batch_size)
        np.testing.assert_allclose(got, expected, atol=1e-5)
    # truncation is reported the same way (it is tokenizer-side)
    long = ["word " * 100]
    assert twin.predict_with_truncation(long)[1].tolist() == [True]


def test_onnx_twin_leaves_the_torch_model_untouched(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    to_onnx_runtime(model, int8=False, threads=1)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in model.parameters())


def test_onnx_twin_refuses_to_be_saved(model, tmp_path):
    twin = to_onnx_runtime(model, int8=False, threads=1)
    with pytest.raises(TypeError, match="not saved"):
        twin.save(tmp_path / "m")


def test_passes_pad_to_their_own_longest_text(model):
    """Texts go to passes by token count, and each pass is only as wide as its longest text."""
    widths: list[int] = []
    forward = model.forward

    def recording(input_ids, attention_mask):
        widths.append(input_ids.shape[1])
        assert (attention_mask.sum(dim=1) > 0).all()
        return forward(input_ids, attention_mask)

    model.forward = recording
    texts = [f"{'word ' * n}".strip() for n in (1, 20, 2, 19, 3, 18)]
    proba = model.predict_proba(texts, batch_size=2)
    # token counts are n + 2 ([CLS] and [SEP]): passes {1,2}, {3,18}, {19,20}
    assert widths == [4, 20, 22]
    singles = np.concatenate([model.predict_proba([t]) for t in texts])
    np.testing.assert_allclose(proba, singles, atol=1e-5)
