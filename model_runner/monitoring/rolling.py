"""The last N predictions a replica served per task: class shares and mean confidence in O(1) per text.

Feeds the Prometheus gauges (``tweetpulse_served_class_share`` and friends); every prediction counts,
sampled or not, so the gauges do not depend on ``served_sample_rate``.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Sequence


class RollingShares:
    def __init__(self, size: int = 1000):
        self.size = size
        self._items: dict[str, deque[tuple[str, float]]] = {}
        self._counts: dict[str, Counter[str]] = {}
        self._conf: dict[str, float] = {}
        self._classes: dict[str, set[str]] = {}

    def add(
        self, task: str, labels: Sequence[str], confidences: Sequence[float], classes: Iterable[str] = ()
    ) -> None:
        items = self._items.get(task)
        if items is None:
            items = self._items[task] = deque()
            self._counts[task] = Counter()
            self._conf[task] = 0.0
            self._classes[task] = set()
        counts = self._counts[task]
        self._classes[task].update(classes)
        conf = self._conf[task]
        for label, c in zip(labels, confidences, strict=False):
            if len(items) >= self.size:
                old_label, old_c = items.popleft()
                counts[old_label] -= 1
                conf -= old_c
            items.append((label, float(c)))
            counts[label] += 1
            conf += float(c)
        self._conf[task] = conf

    def snapshot(self) -> dict[str, tuple[int, dict[str, float], float | None]]:
        """task -> (predictions in the window, share per class, mean confidence)."""
        out = {}
        for task, items in self._items.items():
            n = len(items)
            classes = self._classes[task] | {k for k, v in self._counts[task].items() if v}
            shares = {label: (self._counts[task][label] / n if n else 0.0) for label in sorted(classes)}
            out[task] = (n, shares, (self._conf[task] / n) if n else None)
        return out


def total_variation(a: dict[str, float], b: dict[str, float]) -> float:
    """Half the L1 distance between two class distributions: 0 (same) to 1 (disjoint)."""
    labels = set(a) | set(b)
    return round(0.5 * sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in labels), 6)
