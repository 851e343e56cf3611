import numpy as np
import pytest

from model_runner.modeling.classifier import TweetClassifier
from model_runner.training.fitting import build_classifier, fit_candidate, predict_candidate
from model_runner.training.folds import CVData
from model_runner.training.search_space import SEARCH_SPACE, Candidate, candidates_for, without_teacher

from .conftest import make_rows

TINY = {
    "linear": Candidate.of("linear", C=1.0),
    "mlp": Candidate.of("mlp", hidden=32, dropout=0.1, lr=3e-3, weight_decay=0.0, epochs=30),
    "lora": Candidate.of(
        "lora", rank=4, alpha=8, dropout=0.0, lr=3e-3, epochs=3, batch_size=16, target_modules="query,value"
    ),
    "finetune": Candidate.of("finetune", lr=3e-3, epochs=3, batch_size=16, weight_decay=0.0),
}


@pytest.fixture(scope="module")
def cv_data(tiny_bert, tiny_encoder):
    rows = make_rows(30, seed=3)
    texts = [r["text"] for r in rows]
    labels = ["negative", "neutral", "positive"]
    y = np.array([labels.index(r["label"]) for r in rows])
    return CVData(tiny_encoder.encode(texts), texts, y, labels, str(tiny_bert), 32, 0, "cpu")


@pytest.mark.parametrize("adapter", ["linear", "mlp", "lora", "finetune"])
def test_every_adapter_trains_predicts_and_round_trips(adapter, cv_data, tmp_path):
    idx = np.arange(len(cv_data.y))
    epochs_seen = []
    fitted = fit_candidate(TINY[adapter], cv_data, idx, on_epoch=lambda e, n: epochs_seen.append((e, n)))
    proba = predict_candidate(fitted, TINY[adapter], cv_data, idx)
    assert proba.shape == (len(idx), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    # the words carry the label: even a tiny random encoder must learn the training rows well
    assert (proba.argmax(axis=1) == cv_data.y).mean() > 0.6
    if adapter != "linear":
        assert epochs_seen and epochs_seen[-1][0] == epochs_seen[-1][1]

    model = build_classifier(fitted, TINY[adapter], cv_data, {"adapter": adapter})
    # the deployable model (encoder + pooling + head) gives what CV measured
    np.testing.assert_allclose(model.predict_proba(cv_data.texts, clean=False), proba, atol=1e-4)
    loaded = TweetClassifier.load(model.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.predict_proba(cv_data.texts[:8], clean=False), proba[:8], atol=1e-4)
    assert loaded.meta["adapter"] == adapter
    if adapter == "lora":
        assert loaded.meta["lora"]["rank"] == 4
        assert not any("lora" in name for name, _ in loaded.encoder.named_parameters())  # merged
    if adapter in ("lora", "finetune"):  # the encoder itself changed, not only the head
        from transformers import AutoModel

        base = AutoModel.from_pretrained(cv_data.base_path, use_safetensors=True).state_dict()
        changed = [k for k, v in loaded.encoder.state_dict().items() if not np.allclose(v, base[k])]
        assert changed, "the encoder weights did not move"


def test_training_is_repeatable_for_a_seed(cv_data):
    idx = np.arange(len(cv_data.y))
    a = predict_candidate(fit_candidate(TINY["mlp"], cv_data, idx), TINY["mlp"], cv_data, idx)
    b = predict_candidate(fit_candidate(TINY["mlp"], cv_data, idx), TINY["mlp"], cv_data, idx)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_search_space_is_declared_for_every_adapter():
    assert set(SEARCH_SPACE) == {"linear", "mlp", "lora", "finetune", "distill"}
    assert without_teacher(SEARCH_SPACE["distill"][0]) == SEARCH_SPACE["finetune"][0]
    assert without_teacher(SEARCH_SPACE["mlp"][0]) == SEARCH_SPACE["mlp"][0]
    assert [c.adapter for c in candidates_for(["linear"])] == ["linear"] * len(SEARCH_SPACE["linear"])
    with pytest.raises(ValueError, match="unknown adapter"):
        candidates_for(["svm"])


def test_cv_epochs_fill_the_pass_budget_on_small_data_only():
    from model_runner.training.fitting import cv_epochs

    hp = {"epochs": 3, "cv_epochs": 1, "cv_pass_budget": 6000}
    assert cv_epochs(hp, 4642) == 1  # sentiment fold: one epoch fills the budget
    assert cv_epochs(hp, 2500) == 2
    assert cv_epochs(hp, 1628) == 3  # emotion fold: the full epochs, never more
    assert cv_epochs(hp, 100) == 3
    assert cv_epochs({"epochs": 3, "cv_epochs": 1}, 100) == 1  # no budget: the fixed CV epochs
    assert cv_epochs({**hp, "cv_epochs": 2}, 9000) == 2  # never below cv_epochs


def test_fit_epochs_give_small_training_splits_more_passes_within_bounds():
    from model_runner.training.fitting import fit_epochs, resolve_hp

    hp = {"epochs": 2, "max_epochs": 8, "fit_pass_target": 20_000}
    assert fit_epochs(hp, 9284) == 2  # sentiment: the floor
    assert fit_epochs(hp, 4641) == 4
    assert fit_epochs(hp, 3257) == 6  # emotion
    assert fit_epochs(hp, 100) == 8  # never above max_epochs
    assert fit_epochs({"epochs": 2}, 100) == 2  # no target: the fixed epochs
    finetune = SEARCH_SPACE["finetune"][0]
    assert resolve_hp(finetune, 3257)["epochs"] == 6
    assert resolve_hp(finetune, 1628, in_cv=True)["epochs"] == 2  # an emotion CV fold: its own budget
    assert finetune.hp["epochs"] == 2  # the declared candidate is never changed


@pytest.mark.parametrize("adapter", ["linear", "mlp", "lora", "finetune"])
def test_epoch_based_fits_report_every_batch_and_score_validation_rows_at_each_epoch_end(adapter, cv_data):
    from model_runner.training.fitting import ValRows

    candidate = Candidate.of(TINY[adapter].adapter, **{**TINY[adapter].hp, "epochs": 2})
    train, held = np.arange(60), np.arange(60, len(cv_data.y))
    val = ValRows([cv_data.texts[i] for i in held], cv_data.y[held])
    steps = []
    fit_candidate(candidate, cv_data, train, on_step=steps.append, val=val)
    if adapter == "linear":  # one lbfgs solve: no epochs, nothing to report
        assert steps == []
        return
    fractions = [s.fraction for s in steps]
    assert fractions == sorted(fractions) and len(set(fractions)) == len(fractions)
    assert fractions[-1] == pytest.approx(1.0)
    ends = [s for s in steps if s.epoch_done]
    assert [s.epoch for s in ends] == [1, 2] and all(s.epochs == 2 for s in steps)
    assert all(s.val_loss is not None and s.val_loss > 0 for s in ends)
    assert all(0 <= s.val_macro_recall <= 1 for s in ends)
    assert all(s.val_loss is None for s in steps if not s.epoch_done)
    assert all(s.train_loss > 0 for s in steps)
    assert steps[0].batches == len(steps) // 2 and "epoch 1/2, batch 1/" in steps[0].describe()
