"""The champion gate: does a freshly trained model replace the current champion?

Both scores must come from the same frozen evaluation set. The rule is deliberately simple and
one-sided (DESIGN §1): the candidate wins unless it is worse than the champion by more than
``tolerance``; with no champion yet, the first model promotes itself. Confidence intervals are
recorded for humans, not used in the decision. The decision is stored as model version tags so the
registry itself explains why every version was or was not promoted.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

# Absorbs float noise such as 0.81 - 0.01 < 0.80 so "exactly at the tolerance" promotes.
_EPS = 1e-12
_NONE = "none"


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    metric: str
    candidate_score: float
    champion_score: float | None
    tolerance: float
    candidate_ci: tuple[float, float] | None = None
    champion_ci: tuple[float, float] | None = None
    champion_version: str | None = None

    def as_tags(self) -> dict[str, str]:
        return {
            "gate.decision": "promoted" if self.promote else "rejected",
            "gate.metric": self.metric,
            "gate.candidate_score": _num(self.candidate_score),
            "gate.champion_score": _num(self.champion_score),
            "gate.tolerance": _num(self.tolerance),
            "gate.candidate_ci": _ci(self.candidate_ci),
            "gate.champion_ci": _ci(self.champion_ci),
            "gate.champion_version": self.champion_version or _NONE,
            "gate.reason": self.reason,
        }

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> GateDecision:
        """Inverse of :meth:`as_tags` (e.g. to show why the served version won)."""
        champion_version = tags["gate.champion_version"]
        return cls(
            promote=tags["gate.decision"] == "promoted",
            reason=tags["gate.reason"],
            metric=tags["gate.metric"],
            candidate_score=float(tags["gate.candidate_score"]),
            champion_score=_parse_num(tags["gate.champion_score"]),
            tolerance=float(tags["gate.tolerance"]),
            candidate_ci=_parse_ci(tags["gate.candidate_ci"]),
            champion_ci=_parse_ci(tags["gate.champion_ci"]),
            champion_version=None if champion_version == _NONE else champion_version,
        )


def decide(
    candidate_score: float,
    champion_score: float | None,
    *,
    tolerance: float,
    metric: str,
    candidate_ci: tuple[float, float] | None = None,
    champion_ci: tuple[float, float] | None = None,
    champion_version: str | None = None,
) -> GateDecision:
    """Promote iff there is no champion or ``candidate >= champion - tolerance``."""
    if not (tolerance >= 0 and math.isfinite(tolerance)):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    extra = {
        "metric": metric,
        "candidate_score": float(candidate_score),
        "champion_score": None if champion_score is None else float(champion_score),
        "tolerance": float(tolerance),
        "candidate_ci": _as_ci(candidate_ci),
        "champion_ci": _as_ci(champion_ci),
        "champion_version": None if champion_version is None else str(champion_version),
    }
    # A NaN candidate (e.g. a metric undefined on a degenerate eval set) must never win.
    if not math.isfinite(candidate_score):
        return GateDecision(False, f"candidate {metric} is {candidate_score}, not a number", **extra)
    if champion_score is None:
        return GateDecision(True, "no champion yet: the first model promotes itself", **extra)
    if not math.isfinite(champion_score):
        reason = f"champion {metric} is {champion_score}: any scored candidate wins"
        return GateDecision(True, reason, **extra)
    delta = candidate_score - champion_score
    if delta >= -tolerance - _EPS:
        reason = (
            f"candidate {metric} {candidate_score:.4f} >= champion {champion_score:.4f} "
            f"- tolerance {tolerance:.4f} (delta {delta:+.4f})"
        )
        return GateDecision(True, reason, **extra)
    reason = (
        f"candidate {metric} {candidate_score:.4f} is {-delta:.4f} below champion {champion_score:.4f}, "
        f"more than the tolerance {tolerance:.4f}"
    )
    return GateDecision(False, reason, **extra)


def _as_ci(ci: tuple[float, float] | None) -> tuple[float, float] | None:
    return None if ci is None else (float(ci[0]), float(ci[1]))


def _num(value: float | None) -> str:
    # repr() round-trips floats exactly through the string tag.
    return _NONE if value is None else repr(float(value))


def _parse_num(text: str) -> float | None:
    return None if text == _NONE else float(text)


def _ci(ci: tuple[float, float] | None) -> str:
    return _NONE if ci is None else json.dumps([float(ci[0]), float(ci[1])])


def _parse_ci(text: str) -> tuple[float, float] | None:
    if text == _NONE:
        return None
    low, high = json.loads(text)
    return float(low), float(high)
