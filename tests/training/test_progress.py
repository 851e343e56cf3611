"""Progress of a training run: the final fit's epochs and batches, its loss curves in MLflow, and
progress writers that keep carriage returns out of log files."""

import io

import mlflow
import pytest
from tqdm import tqdm

from model_runner.tasks import get_task
from model_runner.training.progress_bar import PlainLines, PlainProgress, training_progress
from model_runner.training.run import STAGES, run_training


def _fit_reports(reports):
    return [(p, d) for s, p, d in reports if s == "fit"]


@pytest.mark.parametrize("adapter", ["mlp", "finetune"])
def test_the_final_fit_reports_epochs_and_batches_and_logs_its_loss_curves(
    adapter, components, settings, dataset
):
    reports = []
    outcome = run_training(
        components,
        get_task("sentiment", settings),
        data=str(dataset),
        adapters=[adapter],
        progress=lambda stage, p, detail=None: reports.append((stage, p, detail)),
    )
    assert outcome.best_candidate.startswith(adapter)
    overall = [p for _, p, _ in reports]
    assert overall == sorted(overall)

    fit = _fit_reports(reports)
    lo, hi = STAGES["cv"], STAGES["fit"]
    assert all(lo <= p <= hi for p, _ in fit)
    batches = [(p, d) for p, d in fit if d and d.startswith("epoch ")]
    assert len(batches) >= 2 and len({p for p, _ in batches}) == len(batches)  # it moves, batch by batch
    assert batches[-1][0] > batches[0][0]
    assert any(", batch " in d for _, d in batches)

    client = mlflow.MlflowClient(settings.tracking_uri())
    run = client.get_run(outcome.run_id)
    epochs = int(run.data.params["fit.epochs"])
    assert epochs >= 2 and batches[-1][1].startswith(f"epoch {epochs}/{epochs}")
    for key in ("fit/train_loss", "fit/val_loss", "fit/val_macro_recall"):
        history = client.get_metric_history(outcome.run_id, key)
        assert sorted(m.step for m in history) == list(range(epochs)), key
    losses = [
        m.value
        for m in sorted(client.get_metric_history(outcome.run_id, "fit/train_loss"), key=lambda m: m.step)
    ]
    assert losses[-1] < losses[0]  # the words carry the label: the training loss falls
    assert int(run.data.params["fit.val_rows"]) == outcome.data["rows_out"]["eval"]
    assert "held-out" in run.data.params["fit.val_source"]


def test_the_linear_head_has_no_epochs_and_no_curves(components, settings, dataset):
    reports = []
    outcome = run_training(
        components,
        get_task("sentiment", settings),
        data=str(dataset),
        adapters=["linear"],
        progress=lambda stage, p, detail=None: reports.append((stage, p, detail)),
    )
    assert not any(d and d.startswith("epoch ") for _, d in _fit_reports(reports))
    client = mlflow.MlflowClient(settings.tracking_uri())
    assert client.get_metric_history(outcome.run_id, "fit/train_loss") == []
    assert "fit.val_rows" not in client.get_run(outcome.run_id).data.params


def test_the_warm_up_reports_its_batches_and_logs_its_own_curves(components, settings, dataset, tmp_path):
    from .conftest import write_emotion_data

    settings.task_overrides = {"sentiment": {"data": str(dataset)}, "emotion": {"warmup": "sentiment"}}
    reports = []
    outcome = run_training(
        components,
        get_task("emotion", settings),
        data=str(write_emotion_data(tmp_path / "emotion", 12, 5)),
        adapters=["finetune"],
        progress=lambda stage, p, detail=None: reports.append((stage, p, detail)),
    )
    warm = [(p, d) for s, p, d in reports if s == "warmup" and d and d.startswith("epoch ")]
    assert len(warm) >= 2 and warm[-1][0] > warm[0][0]
    cv = [d for s, _, d in reports if s == "cv" and d]
    assert any("folds done; finetune fold 1/2: epoch 1/" in d for d in cv)
    assert any(d.startswith("2/2 folds done") for d in cv)

    client = mlflow.MlflowClient(settings.tracking_uri())
    epochs = outcome.warmup["epochs"]
    for key in ("warmup/train_loss", "warmup/val_loss", "warmup/val_macro_recall"):
        assert sorted(m.step for m in client.get_metric_history(outcome.run_id, key)) == list(range(epochs))
    fit_epochs = int(client.get_run(outcome.run_id).data.params["fit.epochs"])
    assert len(client.get_metric_history(outcome.run_id, "fit/val_loss")) == fit_epochs


def test_plain_progress_writes_lines_on_stage_changes_and_at_most_every_few_seconds():
    lines = []
    plain = PlainProgress(lines.append, every_s=3600)
    plain("cv", 0.3)
    plain("cv", 0.4, "fold 2/4")  # within the interval: skipped
    plain("fit", 0.6, "epoch 1/2, batch 1/10, loss 0.9")
    plain("fit", 0.7, "epoch 2/2, batch 1/10, loss 0.5")
    plain("gate", 1.0)
    plain("gate", 1.0)
    assert lines == [
        "progress  30.0%  cv",
        "progress  60.0%  fit: epoch 1/2, batch 1/10, loss 0.9",
        "progress 100.0%  gate",
    ]
    every = []
    always = PlainProgress(every.append, every_s=0)
    for i in range(5):
        always("fit", 0.6 + i / 100, f"batch {i}")
    assert len(every) == 5


def test_tqdm_bars_through_plain_lines_leave_no_carriage_returns():
    out = io.StringIO()
    lines = PlainLines(out, every_s=3600)
    lines.write("a log line\n")
    for _ in tqdm(range(50), desc="embedding", file=lines, mininterval=0):
        pass
    lines.write("the next log line\n")
    bar = tqdm(total=10, desc="cross-validation", file=lines, mininterval=0)
    bar.update(4)
    bar.close()
    lines.close_bars()
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    rows = text.splitlines()
    assert rows[0] == "a log line"
    assert rows[1].startswith("embedding:   0%")  # the first status, then the last one only
    assert rows[2].startswith("embedding: 100%") and "50/50" in rows[2]
    assert rows[3] == "the next log line"
    # within every_s of the last status line: only the bar's last status, when it closes
    assert rows[4].startswith("cross-validation:  40%") and len(rows) == 5
    assert all(row.strip() for row in rows)


def test_training_progress_off_a_terminal_writes_plain_lines_and_no_carriage_returns(capsys):
    stream = io.StringIO()
    with training_progress(stream, every_s=0) as progress:
        progress("cv", 0.4)
        progress("fit", 0.7, "epoch 1/2, batch 3/9, loss 0.812")
    text = stream.getvalue()
    assert "\r" not in text
    assert text.splitlines() == [
        "progress  40.0%  cv",
        "progress  70.0%  fit: epoch 1/2, batch 3/9, loss 0.812",
    ]

    with training_progress(every_s=0) as progress:  # on sys.stderr (captured: not a terminal)
        progress("fit", 0.7, "epoch 1/2")
        for _ in tqdm(range(20), desc="embedding", mininterval=0):
            pass
    err = capsys.readouterr().err
    assert "\r" not in err
    assert "progress  70.0%  fit: epoch 1/2" in err and "embedding: 100%" in err


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_training_progress_on_a_terminal_draws_one_bar_with_the_stage_and_detail():
    stream = _Tty()
    with training_progress(stream) as progress:
        progress("cv", 0.4)
        progress("fit", 0.7, "epoch 1/2, batch 3/9, loss 0.812")
        progress("gate", 1.0)
    text = stream.getvalue()
    assert "\r" in text  # a live bar
    assert "training: gate: 100%" in text


def test_the_worker_writes_the_detail_to_the_job_row_and_plain_lines_to_its_log(db, caplog):
    import logging

    from model_runner.jobs.train_worker import _Reporter
    from model_runner.store.jobs import JobStore

    store = JobStore(db)
    job = store.create("sentiment", {})
    assert store.claim(job.id, "token", pid=1, host="here", started_at=None)

    class Lease:
        token, lost = "token", False

    reporter = _Reporter(store, job.id, Lease())
    with caplog.at_level(logging.INFO, logger="model_runner.train_worker"):
        reporter.progress("fit", 0.7, "epoch 1/2, batch 3/9, loss 0.812")
    row = store.get(job.id)
    assert (row.stage, row.progress, row.detail) == (
        "fit",
        pytest.approx(0.7),
        "epoch 1/2, batch 3/9, loss 0.812",
    )
    assert f"job {job.id}: progress  70.0%  fit: epoch 1/2, batch 3/9, loss 0.812" in caplog.text
    reporter.progress("evaluate", 0.85)  # a new stage: written at once, its detail cleared
    assert (store.get(job.id).stage, store.get(job.id).detail) == ("evaluate", None)


@pytest.mark.parametrize("workers", [1, 2])
def test_cross_validation_reports_how_far_the_running_folds_are(workers, tiny_bert, tiny_encoder):
    import numpy as np

    from model_runner.training.cv import run_cv
    from model_runner.training.folds import CVData
    from model_runner.training.search_space import Candidate

    from .conftest import make_rows

    rows = make_rows(20, seed=4)
    texts = [r["text"] for r in rows]
    labels = ["negative", "neutral", "positive"]
    y = np.array([labels.index(r["label"]) for r in rows])
    data = CVData(tiny_encoder.encode(texts), texts, y, labels, str(tiny_bert), 32, 0, "cpu")
    mlp = Candidate.of("mlp", hidden=16, dropout=0.0, lr=3e-3, weight_decay=0.0, epochs=3)
    reports = []
    run_cv([mlp], data, folds=2, workers=workers, on_progress=lambda f, detail: reports.append((f, detail)))
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert any(": epoch 3/3, batch 1/1" in d for _, d in reports)  # a running fold
    assert reports[-1][1].startswith("2/2 folds done; mlp fold ") and "macro recall" in reports[-1][1]
    if workers == 1:  # in process every epoch is heard at once; a pool's events come in batches
        assert len(reports) == 2 * 3 + 2
