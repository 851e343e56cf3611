"""Strings at the edge: what every route does to text before it reaches the tokenizer or Postgres.

Two kinds of character break things further in, and JSON can carry both: a lone UTF-16 surrogate
(``"\\ud83d"``: the Rust tokenizer and UTF-8 encoders refuse it) and NUL (Postgres ``text`` cannot hold
it). Both are *replaced* with U+FFFD, the Unicode replacement character, rather than refused: a tweet
with a broken emoji still deserves a label, and the replacement shows where something was lost.
The same rule applies to every string of a JSON body (keys included) and to string query parameters.

``prepare_message`` is the per-message budget of ``/inference``: the cap applies to the *cleaned*
text (emoji become their names, about 23x longer), and the text is cut to a character budget derived
from the model's maximum tokens before tokenisation, so 2,000 emoji cost what a long tweet costs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Request
from fastapi.routing import APIRoute
from pydantic import AfterValidator

from model_runner.data.cleaning import clean_text

REPLACEMENT = "\ufffd"
_BAD = re.compile("[\x00\ud800-\udfff]")
# Characters a WordPiece token covers at most, in practice: English averages ~4 characters a token and
# long words split into pieces; 10 keeps every text that can fit ``max_tokens`` whole.
CHARS_PER_TOKEN = 10


def sanitize(text: str) -> str:
    """``text`` with lone surrogates and NUL replaced by U+FFFD (the same string when it has none)."""
    return _BAD.sub(REPLACEMENT, text)


def sanitize_json(value: Any) -> Any:
    if isinstance(value, str):
        return sanitize(value)
    if isinstance(value, list):
        return [sanitize_json(v) for v in value]
    if isinstance(value, dict):
        return {sanitize(k) if isinstance(k, str) else k: sanitize_json(v) for k, v in value.items()}
    return value


SafeStr = Annotated[str, AfterValidator(sanitize)]
"""A string query parameter with the edge rule applied."""


class _SanitizedRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = sanitize_json(await super().json())
        return self._json


class SanitizingRoute(APIRoute):
    """Every JSON body a route parses has had the edge rule applied to all its strings."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def sanitized(request: Request):
            return await handler(_SanitizedRequest(request.scope, request.receive))

        return sanitized


def char_budget(max_tokens: int, cap: int) -> int:
    return max(16, min(cap, max_tokens * CHARS_PER_TOKEN))


def prepare_message(text: str, *, budget: int) -> tuple[str, bool]:
    """The cleaned text cut to ``budget`` characters, and whether anything was cut.

    The raw text is cut first to a multiple of the budget, so that cleaning (which may shorten a text:
    links become ``http``, whitespace collapses) never runs over a megabyte for a 128-token model.
    """
    raw_cut = len(text) > 4 * budget
    cleaned = clean_text(text[: 4 * budget] if raw_cut else text)
    if len(cleaned) > budget:
        return cleaned[:budget].rstrip(), True
    return cleaned, raw_cut
