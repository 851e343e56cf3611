"""A ``tokenizer.json`` that cleans tweets itself, so a client without tweetpulse tokenizes like /inference.

Training and serving run ``data.cleaning.clean_text`` before the tokenizer (emoji to their names, links
to ``http``, mentions to ``@user``, whitespace). A portable export cannot ship Python code, so the same
rules go into the tokenizer's normalizer, which every ``tokenizers``/``transformers`` version runs::

    Sequence([
        Replace("[\\ufe0e\\ufe0f]" -> "")          variation selectors (clean_text drops the stray ones and
                                                  BERT's accent stripping removes the rest)
        Replace(sequence -> " name ") x ~1,800    multi-code-point emoji whose name is not the names of
                                                  their code points (ZWJ sequences, flags, some tones),
                                                  longest first
        Precompiled(trie: code point -> " name ")  every single-code-point emoji (and short keycaps) in
                                                  one pass: a sentencepiece charsmap built here
        Replace(link regex -> "http"), Replace(mention regex -> "@user")   clean_text's own regexes
        <the encoder's original normalizer>       BertNormalizer (lowercase, accents, whitespace)
    ])

Why this shape (measured on the 2,374 validation tweets of both tasks; figures in docs/training.md,
"Use the model outside tweetpulse"): one ``Replace`` per emoji of ``emoji.EMOJI_DATA`` (5,244) gives
identical token ids but tokenizes ~30x slower than ``clean_text`` + tokenizer, because every
``Replace`` is a pass over the string. The one-pass ``Precompiled`` trie handles all single code points;
an emoji sequence whose name is the concatenation of its code points' names (most skin-tone variants:
"thumbs up" + "medium skin tone") needs nothing more, since the WordPiece pre-tokenizer ignores the
extra spaces. Only the sequences whose name is not compositional keep their own ``Replace`` (1,814 for
MiniLM's vocabulary: ZWJ sequences, flags, tagged flags): identical ids on every tweet of the data, at
~6x (batches) to ~10x (one by one) the tokenizer time of ``clean_text`` + tokenizer, about 0.7 ms a
tweet, small next to the encoder's forward pass. Treating ZWJ sequences as compositional too would cut
that to ~2-3x at the price of 3 of the 2,374 validation tweets tokenizing differently. Whitespace
normalisation needs no step: BERT's pre-tokenizer splits on any whitespace.
"""

from __future__ import annotations

import base64
import json
import struct
from functools import lru_cache
from typing import Any

from emoji import EMOJI_DATA

from model_runner.data.cleaning import _LINK_RE, _MENTION_RE, LINK_TOKEN, MENTION_TOKEN, _emoji_name

_VARIATION_SELECTORS = "[\ufe0e\ufe0f]"


def build_charsmap(mapping: dict[str, str]) -> bytes:
    """A sentencepiece ``precompiled_charsmap`` that rewrites each key of ``mapping`` to its value.

    Format (as ``tokenizers``' ``Precompiled`` reads it): u32 little-endian byte size of the trie, the
    trie as a darts-clone double array of u32 units, then the NUL-terminated replacement strings. A unit
    holds a label byte (bits 0-7), a has-leaf flag (bit 8) and the XOR offset to its children (bits
    10-30); a leaf unit (bit 31) holds the offset of its replacement string.
    """
    blob = bytearray()
    trie: dict = {}
    for key in sorted(mapping):
        if not key or "\0" in mapping[key]:
            raise ValueError(f"cannot map {key!r}")
        node = trie
        for byte in key.encode():
            node = node.setdefault(byte, {})
        node[None] = len(blob)
        blob += mapping[key].encode() + b"\0"

    units: dict[int, int] = {0: 0}
    used_bases: set[int] = set()
    pending = [(trie, 0)]
    while pending:
        node, pos = pending.pop()
        labels = sorted(c for c in node if c is not None)
        slots = ([0] if None in node else []) + labels
        base = 1
        while base in used_bases or any((base ^ c) in units for c in slots):
            base += 1
        used_bases.add(base)
        offset = pos ^ base
        if offset >= 1 << 21:
            raise ValueError("charsmap too large for the double array's offsets")
        units[pos] = (units.get(pos, 0) & 0x1FF) | (offset << 10)
        if None in node:
            units[base] = node[None] | (1 << 31)
        for c in labels:
            units[base ^ c] = c | ((1 << 8) if None in node[c] else 0)
            pending.append((node[c], base ^ c))
    size = max(units) + 1
    array = struct.pack(f"<{size}I", *(units.get(i, 0) for i in range(size)))
    return struct.pack("<I", len(array)) + array + bytes(blob)


def _python_regex(pattern) -> str:
    # clean_text's regexes, as Oniguruma reads them (it supports the same lookbehinds; (?i) for the flag)
    import re

    return ("(?i)" if pattern.flags & re.IGNORECASE else "") + pattern.pattern


def _strip_selectors(text: str) -> str:
    return text.replace("\ufe0e", "").replace("\ufe0f", "")


@lru_cache(maxsize=8)
def _emoji_rules(base_tokenizer_json: str) -> tuple[tuple[tuple[str, str], ...], dict[str, str]]:
    """(sequence replacements, longest first; single-code-point map) for this encoder's tokenizer."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(base_tokenizer_json)
    tokenizer.no_padding()
    tokenizer.no_truncation()
    singles: dict[str, str] = {}
    for chars, data in EMOJI_DATA.items():
        key = _strip_selectors(chars)
        if len(key) == 1:
            singles.setdefault(key, _emoji_name(chars, data))

    def ids(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False).ids

    sequences: dict[str, str] = {}
    for chars, data in EMOJI_DATA.items():
        key = _strip_selectors(chars)
        if len(key) < 2 or key in sequences:
            continue
        name = _emoji_name(chars, data)
        if ids(name) != ids("".join(singles.get(c, c) for c in key)):
            sequences[key] = name
    # keys the Precompiled trie can take whole: it matches a grapheme under 6 bytes at once (keycaps)
    short = {k: v for k, v in sequences.items() if len(k.encode()) < 6}
    charsmap = {**singles, **short}
    replace = tuple(
        sorted(((k, v) for k, v in sequences.items() if k not in short), key=lambda kv: (-len(kv[0]), kv[0]))
    )
    return replace, charsmap


def cleaning_normalizer(base_tokenizer: dict[str, Any]) -> dict[str, Any]:
    """The normalizer (tokenizer.json form) of ``base_tokenizer`` with ``clean_text`` put in front."""
    replace, charsmap = _emoji_rules(json.dumps(base_tokenizer))
    steps: list[dict[str, Any]] = [
        {"type": "Replace", "pattern": {"Regex": _VARIATION_SELECTORS}, "content": ""},
        *({"type": "Replace", "pattern": {"String": k}, "content": v} for k, v in replace),
        {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(build_charsmap(charsmap)).decode()},
        {"type": "Replace", "pattern": {"Regex": _python_regex(_LINK_RE)}, "content": LINK_TOKEN},
        {"type": "Replace", "pattern": {"Regex": _python_regex(_MENTION_RE)}, "content": MENTION_TOKEN},
    ]
    original = base_tokenizer.get("normalizer")
    if original is not None:
        steps.append(original)
    return {"type": "Sequence", "normalizers": steps}


def portable_tokenizer_json(base_tokenizer: dict[str, Any], max_length: int) -> dict[str, Any]:
    """``base_tokenizer`` (parsed tokenizer.json) that cleans like ``clean_text`` and truncates at
    ``max_length``, without padding (transformers sets both per call; this is for ``tokenizers`` users)."""
    out = dict(base_tokenizer)
    out["normalizer"] = cleaning_normalizer(base_tokenizer)
    out["truncation"] = {
        "direction": "Right",
        "max_length": int(max_length),
        "strategy": "LongestFirst",
        "stride": 0,
    }
    out["padding"] = None
    return out
