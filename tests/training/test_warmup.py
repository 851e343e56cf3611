"""Intermediate-task warm-up: emotion's encoder adapters start from an encoder tuned on sentiment."""

import mlflow
import pytest
import torch
from safetensors.torch import load_file

from model_runner.tasks import get_task
from model_runner.training import fitting
from model_runner.training import run as run_module
from model_runner.training.run import run_training

from .conftest import EMOTION_WORDS, write_emotion_data


@pytest.fixture
def emotion_data(tmp_path):
    return write_emotion_data(tmp_path / "emotion", 12, 5)


def _encoder_weights(folder) -> dict[str, torch.Tensor]:
    return load_file(str(next(folder.glob("*.safetensors"))))


def test_emotion_finetune_starts_from_an_encoder_warmed_up_on_sentiment(
    components, settings, dataset, emotion_data, tiny_bert, monkeypatch
):
    settings.task_overrides = {"sentiment": {"data": str(dataset)}, "emotion": {"warmup": "sentiment"}}
    task = get_task("emotion", settings)
    base = _encoder_weights(tiny_bert)
    starts = []
    real = fitting.fit_finetune

    def spy(base_path, texts, y, labels, **kwargs):
        starts.append((base_path, kwargs["init_head"], list(labels)))
        if base_path != tiny_bert:  # the warmed folder is gone after the run: read it now
            starts[-1] += (_encoder_weights(base_path),)
        return real(base_path, texts, y, labels, **kwargs)

    monkeypatch.setattr(fitting, "fit_finetune", spy)
    outcome = run_training(components, task, data=str(emotion_data), adapters=["finetune"])

    # first the warm-up on sentiment's three classes from the base encoder, then every emotion fit
    # (CV folds and the final fit) from the warmed encoder, which really differs from the base
    assert starts[0][0] == tiny_bert and starts[0][2] == ["negative", "neutral", "positive"]
    emotion_fits = starts[1:]
    assert len(emotion_fits) == 3  # 2 CV folds + the final fit
    assert all(labels == sorted(EMOTION_WORDS) for _, _, labels, _ in emotion_fits)
    warmed = emotion_fits[0][3]
    assert any(not torch.equal(warmed[k], base[k]) for k in base if k in warmed)
    assert outcome.warmup["task"] == "sentiment" and outcome.warmup["rows"] == 120
    assert outcome.summary()["warmup"] == "sentiment"

    params = mlflow.MlflowClient(settings.tracking_uri()).get_run(outcome.run_id).data.params
    assert params["warmup.task"] == "sentiment" and params["warmup.rows"] == "120"
    assert "warmup" in outcome.stage_seconds
    from model_runner.jobs.champion import load_champion

    assert load_champion(settings, "emotion").model.meta["warmup"]["task"] == "sentiment"


def test_missing_warmup_data_trains_from_the_base_encoder_and_says_so(
    components, settings, emotion_data, tiny_bert, tmp_path, monkeypatch
):
    settings.task_overrides = {
        "sentiment": {"data": str(tmp_path / "no-such-folder")},
        "emotion": {"warmup": "sentiment"},
    }
    paths = []
    real = fitting.fit_finetune
    monkeypatch.setattr(fitting, "fit_finetune", lambda p, *a, **kw: paths.append(p) or real(p, *a, **kw))
    outcome = run_training(
        components, get_task("emotion", settings), data=str(emotion_data), adapters=["finetune"]
    )
    assert outcome.promoted and outcome.warmup is None
    assert paths and all(p == tiny_bert for p in paths)
    tags = mlflow.MlflowClient(settings.tracking_uri()).get_run(outcome.run_id).data.tags
    assert "no-such-folder" in tags["warmup.skipped"]


def test_head_only_runs_and_tasks_without_warmup_skip_it(
    components, settings, dataset, emotion_data, monkeypatch
):
    called = []
    monkeypatch.setattr(run_module, "warm_up_encoder", lambda *a, **kw: called.append(a))
    settings.task_overrides = {"sentiment": {"data": str(dataset)}, "emotion": {"warmup": "sentiment"}}
    run_training(components, get_task("emotion", settings), data=str(emotion_data), adapters=["linear"])
    assert get_task("sentiment", settings).warmup == ""  # the default: no warm-up
    run_training(components, get_task("sentiment", settings), data=str(dataset), adapters=["linear"])
    assert called == []


def test_a_task_cannot_warm_up_on_itself_or_an_unknown_task(settings):
    settings.task_overrides = {"emotion": {"warmup": "emotion"}}
    with pytest.raises(ValueError, match="must name another task"):
        get_task("emotion", settings)
    settings.task_overrides = {"emotion": {"warmup": "sarcasm"}}
    with pytest.raises(ValueError, match="must name another task"):
        get_task("emotion", settings)
