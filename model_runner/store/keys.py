"""The cache key of a text: the SHA-256 of its normalised form.

Normalising first means that two spellings of one tweet that differ only in mentions, links or
whitespace share one vector, and the vector is always computed from the normalised text.
"""

from __future__ import annotations

import hashlib

from model_runner.data.cleaning import clean_text


def normalise(text: str) -> str:
    return clean_text(text)


def text_key(normalised_text: str) -> bytes:
    return hashlib.sha256(normalised_text.encode("utf-8")).digest()
