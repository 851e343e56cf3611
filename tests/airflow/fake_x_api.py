"""A local HTTP server answering like the X API v2 with recorded responses (x_api_responses/*.json).

tweepy's real code runs against it: the ``x_api`` connection's host points the client here.
Each route has a script of responses; the last one repeats. Every request is recorded.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
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


class FakeXApi:
    def __init__(self):
        self.scripts: dict[str, list[Reply]] = {}
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                reply = fake._next(parts.path, Seen(parts.path, query, self.headers.get("Authorization")))
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
        self.scripts[path] = list(replies)

    def _next(self, path: str, seen: Seen) -> Reply:
        with self._lock:
            self.seen.append(seen)
            queue = self.scripts.get(path)
            if not queue:
                return Reply(404, {"title": "Not Found Error", "detail": f"no route {path}", "status": 404})
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def calls(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
