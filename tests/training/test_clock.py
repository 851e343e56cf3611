"""The training clock: progress shares, stage timing and cancellation of one run."""

import pytest

from model_runner.training.clock import TrainingClock
from model_runner.training.run import STAGES

SHARES = {"data": 0.1, "warmup": 0.5, "cv": 0.9, "gate": 1.0}


def test_a_stage_reports_from_where_the_stage_listed_before_it_ends():
    reports = []
    clock = TrainingClock(SHARES, progress=lambda stage, p: reports.append((stage, p)))
    with clock.stage("data"):
        clock.progress(0.5)
    with clock.stage("cv"):  # warm-up skipped: cv still starts at warm-up's end
        clock.progress(0.5)
    with clock.stage("gate"):
        pass
    clock.finish()
    assert reports == [
        ("data", 0.0),
        ("data", pytest.approx(0.05)),
        ("cv", 0.5),
        ("cv", pytest.approx(0.7)),
        ("gate", 0.9),
        ("gate", 1.0),
    ]


def test_stages_are_timed_when_they_end_and_only_then():
    clock = TrainingClock(SHARES)
    with clock.stage("data"):
        pass
    with pytest.raises(RuntimeError), clock.stage("cv"):
        raise RuntimeError("disk full")
    assert list(clock.timings) == ["data"]
    assert clock.timings["data"] >= 0 and clock.elapsed() >= clock.timings["data"]


def test_every_report_checks_for_cancellation_first():
    stop = {"now": False}
    reports = []
    clock = TrainingClock(SHARES, progress=lambda s, p: reports.append(s), should_stop=lambda: stop["now"])
    with clock.stage("data"):
        assert not clock.stop_requested()
        clock.check()
        stop["now"] = True
        assert clock.stop_requested()
        with pytest.raises(InterruptedError, match="training cancelled"):
            clock.progress(0.5)
    with pytest.raises(InterruptedError, match="training cancelled"), clock.stage("cv"):
        pass
    assert reports == ["data"]
    assert "cv" not in clock.timings


def test_without_callbacks_the_clock_only_times():
    clock = TrainingClock(STAGES)
    assert not clock.stop_requested()
    with clock.stage("data"):
        clock.progress(1.0)
    clock.finish()
    assert list(clock.timings) == ["data"]
    with pytest.raises(KeyError, match="unknown stage"), clock.stage("deploy"):
        pass


def test_the_run_stages_fill_the_bar_in_order():
    shares = list(STAGES.values())
    assert shares == sorted(shares) and shares[-1] == 1.0
    assert list(STAGES) == ["data", "embed", "teacher", "warmup", "cv", "fit", "evaluate", "register", "gate"]


def test_callbacks_that_take_a_detail_get_it_and_two_argument_ones_still_work():
    from model_runner.training.clock import FitStep, takes_detail

    with_detail, plain = [], []
    shares = {"cv": 0.5, "fit": 1.0}
    clock = TrainingClock(
        shares, progress=lambda stage, p, detail=None: with_detail.append((stage, p, detail))
    )
    old = TrainingClock(shares, progress=lambda stage, p: plain.append((stage, p)))
    for c in (clock, old):
        with c.stage("fit"):
            report = c.fit_progress(0.1, 0.9)
            report(FitStep(1, 2, 1, 4, 0.75))
            report(FitStep(2, 2, 4, 4, 0.5, val_loss=0.6, val_macro_recall=0.8))
    assert with_detail == [
        ("fit", 0.5, None),
        ("fit", pytest.approx(0.5 + 0.5 * (0.1 + 0.8 * 0.125)), "epoch 1/2, batch 1/4, loss 0.750"),
        (
            "fit",
            pytest.approx(0.95),
            "epoch 2/2, batch 4/4, loss 0.500, val loss 0.600, val macro recall 0.800",
        ),
    ]
    assert plain == [(s, p) for s, p, _ in with_detail]
    assert takes_detail(lambda s, p, d: None) and not takes_detail(lambda s, p: None)
    assert not takes_detail([].append) and not takes_detail(None)
