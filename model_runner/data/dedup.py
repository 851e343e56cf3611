"""Exact-duplicate removal and label-conflict resolution over cleaned rows.

Duplicates inflate the weight of a few tweets and, across splits, leak training texts into
evaluation. Texts seen with different labels are annotator disagreement: a clear majority is
trusted, anything else is noise the model should not be trained or judged on.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

DUPLICATE = "duplicate"
CONFLICTING_LABEL = "conflicting_label"
MAX_CONFLICT_EXAMPLES = 5


@dataclass(frozen=True)
class CleanRow:
    text: str
    label: str
    role: str  # "eval" or "train": what the row will be used for


@dataclass
class DedupResult:
    rows: list[CleanRow]
    conflicts: int = 0
    conflict_examples: list[dict] = field(default_factory=list)


def deduplicate(rows: list[CleanRow], dropped: Counter[str]) -> DedupResult:
    """Keep one row per distinct text, counting what is removed into ``dropped``.

    ``rows`` must come in priority order (eval rows first): the first occurrence with the winning
    label is kept, so a text present in eval is removed from train and never the other way round.
    A label wins when it has a strict majority (more than half) of that text's rows; otherwise
    every row of the text is dropped.
    """
    positions: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        positions.setdefault(row.text, []).append(index)

    keep: list[int] = []
    result = DedupResult(rows=[])
    for text, indices in positions.items():
        counts = Counter(rows[i].label for i in indices)
        winner: str | None
        if len(counts) == 1:
            winner = rows[indices[0]].label
        else:
            result.conflicts += 1
            if len(result.conflict_examples) < MAX_CONFLICT_EXAMPLES:
                result.conflict_examples.append({"text": text, "labels": dict(counts)})
            label, top = counts.most_common(1)[0]
            winner = label if top * 2 > len(indices) else None
            dropped[CONFLICTING_LABEL] += len(indices) - (top if winner is not None else 0)
        if winner is None:
            continue
        winners = [i for i in indices if rows[i].label == winner]
        keep.append(winners[0])
        dropped[DUPLICATE] += len(winners) - 1

    if result.conflicts:
        logger.warning(
            "%d texts appear with conflicting labels (%d rows dropped); examples: %s",
            result.conflicts,
            dropped[CONFLICTING_LABEL],
            result.conflict_examples,
        )
    result.rows = [rows[i] for i in sorted(keep)]
    return result
