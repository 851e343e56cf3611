"""The X API v2 through tweepy: recent search for queries, the user timeline for accounts.

tweepy builds every URL from ``https://api.twitter.com`` and sets no timeout; a requests adapter
mounted on its session adds a default timeout and, when the ``x_api`` connection names a host,
routes the calls there (an API proxy, or a local server replaying recorded responses in tests),
so tweepy's own request, paging and error code always runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import tweepy
from requests.adapters import HTTPAdapter

from tweetpulse_dags.config import X_CONN_ID
from tweetpulse_dags.sources.base import Deadline, FetchedTweet, FetchResult, Target
from tweetpulse_dags.sources.rate_limit import call_within_budget

log = logging.getLogger(__name__)

API_ORIGINS = ("https://api.twitter.com", "https://api.x.com")
TWEET_FIELDS = ["created_at", "author_id", "lang"]


class ApiBaseAdapter(HTTPAdapter):
    def __init__(self, base_url: str | None = None, timeout: tuple[float, float] = (5.0, 30.0)):
        super().__init__(max_retries=0)  # retries are ours (call_within_budget), with a budget
        self.base_url = base_url.rstrip("/") if base_url else None
        self.timeout = timeout

    def send(self, request, **kwargs):
        if self.base_url:
            for origin in API_ORIGINS:
                if request.url.startswith(origin):
                    request.url = self.base_url + request.url[len(origin) :]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().send(request, **kwargs)


def build_client(bearer_token: str, *, base_url: str | None = None, timeout_s: float = 30.0) -> tweepy.Client:
    client = tweepy.Client(bearer_token=bearer_token, wait_on_rate_limit=False)
    return mount_adapter(client, base_url, timeout_s)


@dataclass(frozen=True)
class XCredentials:
    bearer_token: str = field(repr=False)
    base_url: str | None = None
    timeout_s: float = 30.0


def credentials_from_connection(conn_id: str = X_CONN_ID) -> XCredentials | None:
    """None when the connection is missing or has no bearer token (then the replay source is used)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None  # only "not configured" falls back to the replay; other errors must surface
    if not conn.password:
        return None
    return XCredentials(conn.password, api_base_url(conn), connection_timeout(conn))


def api_base_url(conn) -> str | None:
    """The connection's host as the API base URL (None: the real X API)."""
    if not conn.host:
        return None
    base_url = conn.host if "://" in conn.host else f"{conn.schema or 'https'}://{conn.host}"
    return f"{base_url}:{conn.port}" if conn.port else base_url


def connection_timeout(conn) -> float:
    return float((conn.extra_dejson or {}).get("timeout", 30))


def mount_adapter(client: tweepy.Client, base_url: str | None, timeout_s: float) -> tweepy.Client:
    adapter = ApiBaseAdapter(base_url, (min(10.0, timeout_s), timeout_s))
    for origin in API_ORIGINS:
        client.session.mount(origin, adapter)
    return client


class XApiSource:
    name = "x"

    def __init__(self, client: tweepy.Client):
        self.client = client

    @classmethod
    def from_credentials(cls, creds: XCredentials) -> XApiSource:
        return cls(build_client(creds.bearer_token, base_url=creds.base_url, timeout_s=creds.timeout_s))

    def fetch(
        self,
        target: Target,
        since_id: int | None,
        limit: int,
        deadline: Deadline,
        until_id: int | None = None,
    ) -> FetchResult:
        """The newest ``limit`` tweets of ``(since_id, until_id)``: the API pages newest first, so a
        bounded fetch covers ``[oldest returned, until_id)`` and leaves the older rest of the window
        (``kept="newest"``) to a later fetch with ``until_id`` = the oldest id returned."""
        result = FetchResult(kept="newest")
        author_of: dict[int, str] = {}
        if target.kind == "account":
            user = call_within_budget(lambda: self.client.get_user(username=target.value), deadline)
            result.requests += 1
            if user.data is None:
                raise ValueError(f"X account @{target.value} does not exist")
            user_id = user.data.id
        token: str | None = None
        while len(result.tweets) < limit:
            if target.kind == "account":
                size = min(100, max(5, limit - len(result.tweets)))
                page = call_within_budget(
                    lambda size=size, token=token: self.client.get_users_tweets(
                        user_id,
                        since_id=since_id,
                        until_id=until_id,
                        max_results=size,
                        pagination_token=token,
                        tweet_fields=TWEET_FIELDS,
                    ),
                    deadline,
                )
            else:
                size = min(100, max(10, limit - len(result.tweets)))
                page = call_within_budget(
                    lambda size=size, token=token: self.client.search_recent_tweets(
                        target.value,
                        since_id=since_id,
                        until_id=until_id,
                        max_results=size,
                        next_token=token,
                        tweet_fields=TWEET_FIELDS,
                        expansions=["author_id"],
                        user_fields=["username"],
                    ),
                    deadline,
                )
            result.requests += 1
            author_of.update({u.id: u.username for u in page.includes.get("users", [])})
            for tweet in page.data or []:
                author = target.value if target.kind == "account" else author_of.get(tweet.author_id)
                result.tweets.append(FetchedTweet(tweet.id, tweet.text, author, tweet.created_at))
            for error in page.errors:
                log.warning("X API partial error for %s: %s", target.key, error.get("detail", error))
            token = page.meta.get("next_token")
            if not token:
                break
        # newest first from the API; keep the newest `limit` and hand them on oldest first
        result.tweets.sort(key=lambda t: t.id)
        result.truncated = bool(token) or len(result.tweets) > limit
        result.tweets = result.tweets[-limit:]
        return result
