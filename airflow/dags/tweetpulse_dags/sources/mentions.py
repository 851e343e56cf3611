"""The authenticated account's mentions, and posting replies to them, with OAuth 1.0a user context.

X's automation rules let a bot answer users who mention it, never tweets it found by keyword search,
so these are the only tweets the inspector may answer. The user-context keys (``consumer_key``,
``consumer_secret``, ``access_token``, ``access_token_secret``) live in the ``x_api`` connection's
extra; its host, like for the bearer-token source, may replace the API base URL.

``GET /2/users/me`` names the account, ``GET /2/users/:id/mentions`` pages its mentions newest first
(``since_id``/``until_id`` exclusive, 5 to 100 per page), so a bounded fetch keeps the newest ones and
the inspector's backfill window works as for the other X API targets. ``POST /2/tweets`` replies.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import tweepy

from tweetpulse_dags.config import X_CONN_ID
from tweetpulse_dags.sources.base import Deadline, FetchedTweet, FetchResult, Target, TweetSource
from tweetpulse_dags.sources.rate_limit import call_within_budget
from tweetpulse_dags.sources.x_api import api_base_url, connection_timeout, mount_adapter

log = logging.getLogger(__name__)

USER_CONTEXT_KEYS = ("consumer_key", "consumer_secret", "access_token", "access_token_secret")
MENTION_FIELDS = ["created_at", "author_id", "lang", "referenced_tweets"]
MENTIONS = Target("mentions", "me")


class MissingUserContext(ValueError):
    """The ``x_api`` connection lacks the OAuth 1.0a user-context keys that mentions and replies need."""


@dataclass(frozen=True)
class Account:
    id: int
    username: str


def user_context_client(conn_id: str = X_CONN_ID) -> tweepy.Client:
    """A tweepy client signing every call as the account (OAuth 1.0a), routed like the bearer client."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    extra = conn.extra_dejson or {}
    missing = [k for k in USER_CONTEXT_KEYS if not extra.get(k)]
    if missing:
        raise MissingUserContext(
            f"mentions and replies need {', '.join(missing)} in the {conn_id} connection's extra"
        )
    client = tweepy.Client(**{k: extra[k] for k in USER_CONTEXT_KEYS}, wait_on_rate_limit=False)
    return mount_adapter(client, api_base_url(conn), connection_timeout(conn))


def is_retweet(tweet: tweepy.Tweet) -> bool:
    refs = tweet.referenced_tweets or []
    return any(ref.type == "retweeted" for ref in refs) or tweet.text.startswith("RT @")


class MentionsSource:
    """Reads the mentions of the account the keys belong to and posts its replies."""

    name = "x-mentions"

    def __init__(self, client: tweepy.Client):
        self.client = client
        self._account: Account | None = None

    @classmethod
    def from_connection(cls, conn_id: str = X_CONN_ID) -> MentionsSource:
        return cls(user_context_client(conn_id))

    def account(self, deadline: Deadline) -> Account:
        """The authenticated account (one ``GET /2/users/me`` per source)."""
        if self._account is None:
            me = call_within_budget(lambda: self.client.get_me(user_auth=True), deadline)
            if me.data is None:
                raise ValueError("GET /2/users/me named no account: check the x_api user-context keys")
            self._account = Account(me.data.id, me.data.username)
        return self._account

    def fetch(
        self,
        target: Target,
        since_id: int | None,
        limit: int,
        deadline: Deadline,
        until_id: int | None = None,
    ) -> FetchResult:
        """The newest ``limit`` mentions of ``(since_id, until_id)``, oldest first (``kept="newest"``)."""
        if target.kind != "mentions":
            raise ValueError(f"{self.name} reads mentions only, not {target.key}")
        known = self._account is not None
        me = self.account(deadline)
        result = FetchResult(kept="newest", requests=0 if known else 1)  # GET /2/users/me, once
        author_of: dict[int, str] = {}
        token: str | None = None
        while len(result.tweets) < limit:
            size = min(100, max(5, limit - len(result.tweets)))
            page = call_within_budget(
                lambda size=size, token=token: self.client.get_users_mentions(
                    me.id,
                    since_id=since_id,
                    until_id=until_id,
                    max_results=size,
                    pagination_token=token,
                    tweet_fields=MENTION_FIELDS,
                    expansions=["author_id"],
                    user_fields=["username"],
                    user_auth=True,
                ),
                deadline,
            )
            result.requests += 1
            author_of.update({u.id: u.username for u in page.includes.get("users", [])})
            for tweet in page.data or []:
                result.tweets.append(
                    FetchedTweet(
                        tweet.id,
                        tweet.text,
                        author_of.get(tweet.author_id),
                        tweet.created_at,
                        author_id=tweet.author_id,
                        retweet=is_retweet(tweet),
                    )
                )
            for error in page.errors:
                log.warning("X API partial error for the mentions of @%s: %s", me.username, error)
            token = page.meta.get("next_token")
            if not token:
                break
        result.tweets.sort(key=lambda t: t.id)
        result.truncated = bool(token) or len(result.tweets) > limit
        result.tweets = result.tweets[-limit:]
        return result

    def reply(self, text: str, in_reply_to: int, deadline: Deadline) -> int:
        """Posts one reply; returns its tweet id. A 429 waits for the reset when it fits the task's
        time (else RateLimitExhausted); a 5xx or timeout is not retried here, since the reply may
        have been posted."""
        answer = call_within_budget(
            lambda: self.client.create_tweet(text=text, in_reply_to_tweet_id=in_reply_to, user_auth=True),
            deadline,
            max_server_retries=0,
        )
        return int(answer.data["id"])


def mentions_source(
    run_source: TweetSource, given: MentionsSource | None, reply: dict[str, Any] | None
) -> MentionsSource | None:
    """Where the ``mentions:me`` target is read from; None: not this run (it is then a no-op)."""
    if not (reply or {}).get("enabled"):
        log.info("replies are off: the mentions are not read")
        return None
    if run_source.name == "replay":
        log.warning(
            "replies are on but this run reads the replay file (source=replay, or no bearer token in"
            " %s): mentions come from the X API only, so none are read or answered",
            X_CONN_ID,
        )
        return None
    if given is not None:
        return given
    try:
        return MentionsSource.from_connection(X_CONN_ID)
    except MissingUserContext as exc:
        if reply.get("dry_run", True):  # type: ignore[union-attr]
            log.warning("%s; the dry run of the replies is skipped", exc)
            return None
        raise
