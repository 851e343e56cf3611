"""The real base model on the real data, with a documented reduced budget so CI stays short.

Budget: the default encoder adapter (full fine-tuning) only, on a stratified 80% of train.jsonl
(7,427 tweets), 2-fold CV (its pass budget gives these 3,713-row folds 1 epoch) and the default
2-epoch final fit (a smaller sample would get more epochs from the fit target, and take longer).
The held-out split
is ../shared/datasets/tweet-sentiment/validation.jsonl, which training never sees. The full default
run (`model-runner train`) and its figures are in `make bench`.
"""

import pytest

from model_runner.settings import Settings
from model_runner.tasks import get_task
from model_runner.training.run import run_training
from model_runner.wiring import Components

from ..conftest import shared_dataset


@pytest.mark.slow
@pytest.mark.timeout(1800)  # about 7 minutes on an idle 2-core CPU
def test_finetune_on_real_tweets_reaches_the_quality_floor(tmp_path, database_url):
    data = shared_dataset("tweet-sentiment")
    settings = Settings(home=tmp_path / "home", database_url=database_url, bootstrap_samples=300)
    outcome = run_training(
        Components(settings),
        get_task("sentiment", settings),
        data=str(data),
        adapters=["finetune"],
        folds=2,
        sample_fraction=0.8,
    )
    assert outcome.data["eval_source"] == "file:validation"
    assert outcome.data["rows_out"]["eval"] >= 1990
    assert outcome.metrics["macro_recall"] >= 0.60, outcome.summary()
    assert outcome.promoted  # the first model of a fresh registry promotes itself
    assert outcome.quantization["chosen"] in {"int8", "fp32"}
    assert outcome.best_candidate.startswith("finetune")
