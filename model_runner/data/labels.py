"""Turn raw label values from any source into class names.

Datasets label tweets in different ways: names (``"positive"``), integers (TweetEval's ``0/1/2``),
strings of digits (``"2"`` in a CSV) or their own codes. Every raw value is resolved to a lower-case
class name, or rejected with a drop reason, in this order of precedence:

1. ``label_map`` (a task's ``label_map``, ``--label-map``, the ``label_map`` field of ``POST /train``):
   raw value as a string -> name. It applies to integers and strings alike, so it both names integer
   codes and renames string labels.
2. The mapping shipped with the source: a TweetEval ``mapping.txt`` or the ``ClassLabel`` names of a
   Hugging Face Hub dataset. Only used for integer labels.
3. Otherwise a string label is itself the name. An integer nothing names is never guessed from its
   position: it is ``unknown_label``, and ``prepare_dataset`` refuses data whose labels are mostly
   such integers, naming the values it saw, so that 0/1 data is not read as negative/neutral.

``label_names`` (a task's ``labels``) is a whitelist and the class order: a resolved name outside it
is ``unknown_label``.

Mapping other label schemes, for example:

* Sentiment140 (``0`` = negative, ``2`` = neutral, ``4`` = positive)::

      prepare_dataset("sentiment140.csv", label_map={"0": "negative", "2": "neutral", "4": "positive"})

* Abbreviated names: ``label_map={"pos": "positive", "neg": "negative"}``.
* Binary data: ``label_map={"0": "negative", "1": "positive"}``.
* Collapsing classes: ``label_map={"joy": "positive", "optimism": "positive", "anger": "negative"}``
  (labels not in the map pass through unchanged, so also map or whitelist the rest).

Nothing here knows the number of classes or their names; they always come from the data or the caller.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

MISSING_LABEL = "missing_label"
UNKNOWN_LABEL = "unknown_label"

_INT_RE = re.compile(r"^[+-]?\d+$")


def normalise_name(name: str) -> str:
    return name.strip().lower()


def parse_mapping_file(path: Path) -> dict[str, str]:
    """Read a TweetEval ``mapping.txt``: lines ``0\\tnegative`` or ``0 negative``."""
    mapping: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        parts = line.strip().split(maxsplit=1)
        # Some mapping files carry a third "description" column; only the first two matter.
        if len(parts) == 2 and _INT_RE.match(parts[0]):
            mapping[str(int(parts[0]))] = normalise_name(parts[1].split("\t")[0])
    return mapping


def _as_int(raw: object) -> int | None:
    """Integer value of a raw label, or None when it is not integer-like.

    Floats that are whole numbers count because parquet/pandas turn integer columns with nulls
    into floats.
    """
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str) and _INT_RE.match(raw.strip()):
        return int(raw.strip())
    return None


class LabelResolver:
    """Resolves raw label values to names; see the module docstring for the precedence."""

    def __init__(
        self,
        *,
        label_names: Sequence[str] | None = None,
        label_map: Mapping[str, str] | None = None,
        source_mapping: Mapping[str, str] | None = None,
    ) -> None:
        self.label_names = [normalise_name(n) for n in label_names] if label_names is not None else None
        self._allowed = set(self.label_names) if self.label_names is not None else None
        self._label_map = {normalise_name(str(k)): normalise_name(v) for k, v in (label_map or {}).items()}
        self._source_mapping = {str(k).strip(): normalise_name(v) for k, v in (source_mapping or {}).items()}
        # integer raw labels that nothing named, by value: prepare_dataset turns them into an error
        self.unnamed_integers: Counter[int] = Counter()

    def resolve(self, raw: object) -> tuple[str | None, str | None]:
        """Return ``(name, None)`` or ``(None, drop_reason)``."""
        if raw is None or (isinstance(raw, float) and math.isnan(raw)):
            return None, MISSING_LABEL
        if isinstance(raw, str) and not raw.strip():
            return None, MISSING_LABEL
        if not isinstance(raw, str | int | float) or isinstance(raw, bool):
            return None, UNKNOWN_LABEL

        as_int = _as_int(raw)
        key = str(as_int) if as_int is not None else normalise_name(str(raw))
        name = self._label_map.get(key)
        if name is None and as_int is not None:
            name = self._source_mapping.get(key)
            if name is None:
                self.unnamed_integers[as_int] += 1
                return None, UNKNOWN_LABEL
        if name is None:
            if isinstance(raw, float):
                # A non-integral number is not a class name.
                return None, UNKNOWN_LABEL
            name = key
        if not name or (self._allowed is not None and name not in self._allowed):
            return None, UNKNOWN_LABEL
        return name, None

    def order(self, present: set[str]) -> list[str]:
        """Final class order: ``label_names`` restricted to present labels, else sorted names."""
        if self.label_names is not None:
            return [n for n in dict.fromkeys(self.label_names) if n in present]
        return sorted(present)
