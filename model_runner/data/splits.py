"""Seeded stratified splitting with errors a user can act on.

Stratifying keeps every class in both parts, which matters for macro-averaged metrics on imbalanced
tweet data (a minority class missing from eval makes macro recall meaningless).
"""

from __future__ import annotations

from collections import Counter

import datasets

from model_runner.data.readers import DataError


def stratified_split(
    ds: datasets.Dataset,
    *,
    seed: int,
    purpose: str,
    test_size: float | None = None,
    train_size: float | None = None,
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Split ``ds`` by its ClassLabel column ``label``; returns ``(train part, test part)``.

    The same seed and the same input order give the same split.
    """
    names = ds.features["label"].names
    counts = Counter(ds["label"])
    too_small = {names[i]: n for i, n in sorted(counts.items()) if n < 2}
    if too_small:
        raise DataError(
            f"cannot make a stratified {purpose}: class(es) {too_small} have fewer than 2 rows "
            "(add examples, leave the class out via label_names, or supply a validation split)"
        )
    try:
        parts = ds.train_test_split(
            test_size=test_size, train_size=train_size, stratify_by_column="label", seed=seed
        )
    except ValueError as exc:
        # datasets refuses splits where a part would be smaller than the number of classes.
        raise DataError(
            f"cannot make a stratified {purpose} of {len(ds)} rows over {len(counts)} classes "
            f"(test_size={test_size}, train_size={train_size}): {exc}"
        ) from exc
    return parts["train"], parts["test"]
