"""A local HTTP server answering like the X API v2 with recorded responses (x_api_responses/*.json).

tweepy's real code runs against it: the ``x_api`` connection's host points the client here.
Each route has a script of responses; the last one repeats. A script or responder is keyed by path
(any method) or by ``"POST /2/tweets"`` (that method only). Every request is recorded, with the JSON
body of a POST (``posted()``: the tweets tweepy asked to create). A ``Corpus``
answers a route from a growing set of tweets the way the API pages: newest first, ``since_id`` and
``until_id`` exclusive, ``max_results`` per page and an opaque ``next_token``/``pagination_token``.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

RESPONSES = Path(__file__).with_name("x_api_responses")


def recorded(name: str) -> dict:
    return json.loads((RESPONSES / f"{name}.json").read_text())


@dataclass
class Reply:
    status: int
    body: dict
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    authorization: str | None
    method: str = "GET"
    body: dict | None = None


class FakeXApi:
    def __init__(self):
        self.scripts: dict[str, list[Reply]] = {}
        self.responders: dict[str, Callable[[dict[str, str]], Reply]] = {}
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self._answer(None)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                self._answer(json.loads(raw) if raw else None)

            def _answer(self, body: dict | None):
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                auth = self.headers.get("Authorization")
                reply = fake._next(parts.path, Seen(parts.path, query, auth, self.command, body))
                payload = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def script(self, path: str, *replies: Reply) -> None:
        """``path`` alone matches every method; ``"POST /2/tweets"`` only that one."""
        self.scripts[path] = list(replies)

    def serve(self, path: str, responder: Callable[[dict[str, str]], Reply]) -> None:
        """Answer every request on ``path`` with ``responder(query)`` (e.g. a ``Corpus``)."""
        self.responders[path] = responder

    def _next(self, path: str, seen: Seen) -> Reply:
        with self._lock:
            self.seen.append(seen)
            for key in (f"{seen.method} {path}", path):
                if key in self.responders:
                    return self.responders[key](seen.query)
                queue = self.scripts.get(key)
                if queue:
                    return queue.pop(0) if len(queue) > 1 else queue[0]
            return Reply(404, {"title": "Not Found Error", "detail": f"no route {path}", "status": 404})

    def calls(self, path: str, method: str | None = None) -> list[Seen]:
        return [s for s in self.seen if s.path == path and method in (None, s.method)]

    def posted(self, path: str = "/2/tweets") -> list[dict]:
        """The JSON bodies POSTed to ``path``, in order (every attempt, refused ones included)."""
        return [s.body for s in self.calls(path, "POST")]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Corpus:
    """Tweets as the X API v2 serves them from recent search or a user timeline (``min_page`` 10 or 5)."""

    def __init__(self, *, min_page: int = 10, author_id: str = "1422931", username: str = "dana_reads"):
        self.tweets: dict[int, dict] = {}
        self.min_page, self.author_id, self.username = min_page, author_id, username

    def post(self, ids: range | list[int], when: datetime | None = None) -> None:
        when = when or datetime(2026, 3, 10, 12, tzinfo=UTC)
        for n, tweet_id in enumerate(ids):
            self.tweets[tweet_id] = {
                "id": str(tweet_id),
                "edit_history_tweet_ids": [str(tweet_id)],
                "author_id": self.author_id,
                "lang": "en",
                "created_at": (when + timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "text": f"orbly burst tweet {tweet_id}",
            }

    def __call__(self, query: dict[str, str]) -> Reply:
        size = int(query.get("max_results", 10))
        if not self.min_page <= size <= 100:
            detail = f"max_results must be between {self.min_page} and 100"
            return Reply(400, {"title": "Invalid Request", "detail": detail, "status": 400})
        since, until = int(query.get("since_id", 0)), int(query.get("until_id", 2**63))
        token = query.get("next_token") or query.get("pagination_token")
        below = int(base64.urlsafe_b64decode(token)) if token else until
        matching = sorted((i for i in self.tweets if since < i < min(until, below)), reverse=True)
        page = matching[:size]
        if not page:
            return Reply(200, {"meta": {"result_count": 0}})
        meta = {"newest_id": str(page[0]), "oldest_id": str(page[-1]), "result_count": len(page)}
        if len(matching) > size:
            meta["next_token"] = base64.urlsafe_b64encode(str(page[-1]).encode()).decode()
        users = [{"id": self.author_id, "name": "Dana", "username": self.username}]
        return Reply(
            200, {"data": [self.tweets[i] for i in page], "includes": {"users": users}, "meta": meta}
        )
