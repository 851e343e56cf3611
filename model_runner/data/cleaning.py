"""Text normalisation shared by training, evaluation and serving.

The same function must run on training data and on live tweets, otherwise the model sees a different
distribution at serving time. The rules follow the TweetEval convention (mentions -> ``@user``,
links -> ``http``) because the base models and the published data already use it. Emoji become
their names (as BERTweet's normaliser does): the encoder's WordPiece vocabulary has no emoji, so
"love it 😂" would otherwise reach the model as "love it [UNK]". That is 7% of the sentiment tweets
and 11% of the emotion tweets, and emoji carry much of a tweet's tone.
"""

from __future__ import annotations

import re

import emoji

# Links first: URLs may contain "@" (medium.com/@name/...) which must not become a mention.
# "www." must start a token so that words merely containing "www." are left alone.
_LINK_RE = re.compile(r"(?:https?://|(?<![\w.])www\.)\S*", re.IGNORECASE)
# Not preceded by a word character, so e-mail addresses ("a@b.com") are not treated as mentions.
_MENTION_RE = re.compile(r"(?<!\w)@\w+")
_WHITESPACE_RE = re.compile(r"\s+")

MENTION_TOKEN = "@user"
LINK_TOKEN = "http"


def _emoji_name(chars: str, data: dict) -> str:
    # ":face_with_tears_of_joy:" -> "face with tears of joy", spaced off from its neighbours
    return f" {data['en'].strip(':').replace('_', ' ')} "


def clean_text(text: str) -> str:
    """Mask mentions and links, name emoji and normalise whitespace.

    Idempotent: the replacement tokens are fixed points of the rules, so
    ``clean_text(clean_text(x)) == clean_text(x)``.
    """
    # emoji first: dropping a stray variation selector could otherwise join "@" to a name after the
    # mention rule ran, and a second cleaning would change the text again
    if not text.isascii():  # most tweets are plain ASCII: skip the emoji scan
        text = emoji.replace_emoji(text, replace=_emoji_name)
    text = _LINK_RE.sub(LINK_TOKEN, text)
    text = _MENTION_RE.sub(MENTION_TOKEN, text)
    return _WHITESPACE_RE.sub(" ", text).strip()
