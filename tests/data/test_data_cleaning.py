from __future__ import annotations

import random

import pytest

from model_runner.data import clean_text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("@alice hello @Bob_99!", "@user hello @user!"),
        ("thanks @user", "thanks @user"),
        ("mail me at someone@example.com", "mail me at someone@example.com"),
        ("see http://t.co/abc now", "see http now"),
        ("see https://example.com/a?b=c#d.", "see http"),
        ("go to www.example.com today", "go to http today"),
        ("GO TO WWW.Example.com and HTTPS://X.Y", "GO TO http and http"),
        ("read https://medium.com/@writer/post", "read http"),
        ("a\tb\n\nc   d \r\n", "a b c d"),
        ("  padded\u00a0text  ", "padded text"),
        ("no change needed", "no change needed"),
        ("awww.... so cute", "awww.... so cute"),
        ("love it😂😂", "love it face with tears of joy face with tears of joy"),
        ("I \u2764\ufe0f you @bob", "I red heart you @user"),
        ("ok \U0001f44d\U0001f3fd!", "ok thumbs up medium skin tone !"),
        ("café naïve – “quotes”", "café naïve – “quotes”"),
    ],
)
def test_clean_text_rules(raw: str, expected: str) -> None:
    assert clean_text(raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", "\n\t \r\n"])
def test_clean_text_whitespace_only_becomes_empty(raw: str) -> None:
    assert clean_text(raw) == ""


def test_clean_text_is_idempotent_on_tricky_inputs() -> None:
    alphabet = ["@", "w", "ww", "www.", ".", ":", "/", "http", "s", "://", " ", "\n", "x", "_", "é", "a@b"]
    alphabet += ["\U0001f602", "\u2764\ufe0f", "\U0001f3fd", "\ufe0f", "#"]
    rng = random.Random(7)
    samples = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(20000)]
    samples += ["@@name", "@www.x.com", "x@https://y", "http://a@b", "@user.com", "www.www.x"]
    for sample in samples:
        once = clean_text(sample)
        assert clean_text(once) == once, sample
