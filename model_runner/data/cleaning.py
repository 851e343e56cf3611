"""Text normalisation shared by training, evaluation and serving.

The same function must run on training data and on live tweets, otherwise the model sees a different
distribution at serving time. The rules follow the TweetEval convention (mentions -> ``@user``,
links -> ``http``) because the base models and the published data already use it.
"""

from __future__ import annotations

import re

# Links first: URLs may contain "@" (medium.com/@name/...) which must not become a mention.
# "www." must start a token so that words merely containing "www." are left alone.
_LINK_RE = re.compile(r"(?:https?://|(?<![\w.])www\.)\S*", re.IGNORECASE)
# Not preceded by a word character, so e-mail addresses ("a@b.com") are not treated as mentions.
_MENTION_RE = re.compile(r"(?<!\w)@\w+")
_WHITESPACE_RE = re.compile(r"\s+")

MENTION_TOKEN = "@user"
LINK_TOKEN = "http"


def clean_text(text: str) -> str:
    """Mask mentions and links and normalise whitespace.

    Idempotent: the replacement tokens are fixed points of the rules, so
    ``clean_text(clean_text(x)) == clean_text(x)``.
    """
    text = _LINK_RE.sub(LINK_TOKEN, text)
    text = _MENTION_RE.sub(MENTION_TOKEN, text)
    return _WHITESPACE_RE.sub(" ", text).strip()
