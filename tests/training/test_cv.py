import numpy as np
import pytest

from model_runner.training.cv import run_cv
from model_runner.training.folds import CVData, stratified_folds
from model_runner.training.search_space import Candidate

from .conftest import make_rows

LABELS = ["negative", "neutral", "positive"]


def _cv_data(encoder, bert_path, n_per_class: int, seed: int) -> CVData:
    rows = make_rows(n_per_class, seed=seed)
    texts = [r["text"] for r in rows]
    y = np.array([LABELS.index(r["label"]) for r in rows])
    return CVData(encoder.encode(texts), texts, y, LABELS, str(bert_path), 32, 0, "cpu")


def test_folds_are_stratified_disjoint_and_cover_the_training_rows():
    y = np.array([0] * 30 + [1] * 20 + [2] * 10)
    folds = stratified_folds(y, 5, seed=0)
    seen = np.concatenate([va for _, va in folds])
    assert sorted(seen) == list(range(len(y)))
    for tr, va in folds:
        assert not set(tr) & set(va)
        assert np.bincount(y[va]).tolist() == [6, 4, 2]
    assert [va.tolist() for _, va in stratified_folds(y, 5, seed=0)] == [va.tolist() for _, va in folds]


def test_too_small_class_for_k_folds_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 5 examples per class"):
        stratified_folds(np.array([0] * 10 + [1] * 3), 5, seed=0)


def test_cv_reports_mean_and_std_per_candidate(tiny_encoder, tiny_bert):
    data = _cv_data(tiny_encoder, tiny_bert, 20, seed=5)
    cands = [Candidate.of("linear", C=c) for c in (0.01, 1.0)]
    progress = []
    results = run_cv(cands, data, folds=3, workers=1, on_progress=progress.append)
    assert [r.candidate for r in results] == cands
    for r in results:
        assert sorted(f.fold for f in r.folds) == [0, 1, 2]
        scores = r.scores("macro_recall")
        assert r.mean("macro_recall") == pytest.approx(scores.mean())
        assert r.std("macro_recall") == pytest.approx(scores.std(ddof=1))
    assert progress[-1] == pytest.approx(1.0) and len(progress) == 6


def test_cv_in_a_process_pool_matches_in_process(tiny_encoder, tiny_bert):
    data = _cv_data(tiny_encoder, tiny_bert, 12, seed=6)
    cands = [
        Candidate.of("linear", C=1.0),
        Candidate.of("mlp", hidden=16, dropout=0.0, lr=1e-2, weight_decay=0.0, epochs=5),
    ]
    serial = run_cv(cands, data, folds=2, workers=1)
    pooled = run_cv(cands, data, folds=2, workers=2)
    for a, b in zip(serial, pooled, strict=True):
        assert a.mean("macro_recall") == pytest.approx(b.mean("macro_recall"), abs=1e-6)


def test_cancellation_stops_cv(tiny_encoder, tiny_bert):
    data = _cv_data(tiny_encoder, tiny_bert, 10, seed=7)
    with pytest.raises(InterruptedError):
        run_cv([Candidate.of("linear", C=1.0)], data, folds=2, workers=1, should_stop=lambda: True)


def test_a_budgeted_candidate_gets_its_own_smaller_split(tiny_encoder, tiny_bert):
    data = _cv_data(tiny_encoder, tiny_bert, 12, seed=8)
    cheap = Candidate.of("linear", C=1.0, cv_folds=2)
    full = Candidate.of("linear", C=0.5)
    results = {r.candidate: r for r in run_cv([cheap, full], data, folds=4, workers=1)}
    assert len(results[cheap].folds) == 2 and len(results[full].folds) == 4
