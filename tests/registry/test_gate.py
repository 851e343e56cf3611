"""The champion gate: rule, reasons and the tags it leaves on model versions."""

from __future__ import annotations

import math

import pytest

from model_runner.registry import GateDecision, decide


def test_first_model_promotes_itself():
    d = decide(0.41, None, tolerance=0.01, metric="macro_recall")
    assert d.promote and d.champion_score is None and "first model" in d.reason
    assert d.as_tags()["gate.decision"] == "promoted"
    assert d.as_tags()["gate.champion_score"] == "none"


@pytest.mark.parametrize(
    ("candidate", "champion", "tolerance", "promote"),
    [
        (0.70, 0.70, 0.0, True),  # equal
        (0.80, 0.81, 0.01, True),  # exactly at the tolerance (0.81 - 0.01 is not exactly 0.80 in floats)
        (0.695, 0.70, 0.01, True),  # worse, within tolerance
        (0.75, 0.70, 0.0, True),  # better
        (0.68, 0.70, 0.01, False),  # worse beyond tolerance
        (0.6999, 0.70, 0.0, False),  # zero tolerance means never worse
    ],
)
def test_rule(candidate, champion, tolerance, promote):
    d = decide(candidate, champion, tolerance=tolerance, metric="macro_recall", champion_version="3")
    assert d.promote is promote
    assert d.as_tags()["gate.decision"] == ("promoted" if promote else "rejected")
    assert "macro_recall" in d.reason


def test_nan_never_wins_and_bad_tolerance_is_refused():
    assert not decide(math.nan, 0.5, tolerance=0.1, metric="m").promote
    assert not decide(math.nan, None, tolerance=0.1, metric="m").promote
    assert decide(0.5, math.nan, tolerance=0.0, metric="m").promote
    with pytest.raises(ValueError):
        decide(0.5, 0.5, tolerance=-0.01, metric="m")


def test_tags_cover_every_field_and_round_trip():
    d = decide(
        0.7123456789,
        0.7200000001,
        tolerance=0.01,
        metric="macro_recall",
        candidate_ci=(0.69, 0.73),
        champion_ci=(0.70, 0.74),
        champion_version=4,
    )
    tags = d.as_tags()
    assert set(tags) == {
        "gate.decision",
        "gate.metric",
        "gate.candidate_score",
        "gate.champion_score",
        "gate.tolerance",
        "gate.candidate_ci",
        "gate.champion_ci",
        "gate.champion_version",
        "gate.reason",
    }
    assert all(isinstance(v, str) and v for v in tags.values())
    assert tags["gate.champion_version"] == "4"
    assert GateDecision.from_tags(tags) == d


def test_tags_round_trip_through_the_registry(populated):
    reg = populated.registry
    decision = decide(0.55, None, tolerance=0.02, metric="macro_recall", candidate_ci=(0.5, 0.6))
    reg.set_tags("emotion", "1", decision.as_tags())
    stored = reg.versions("emotion")[0].tags
    assert GateDecision.from_tags(stored) == decision
    assert stored["source"] == "emotion"  # set_tags adds, it does not replace
