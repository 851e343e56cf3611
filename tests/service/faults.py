"""Faults on demand for the service tests: a TCP front for the test Postgres that can be cut, and a
served model that breaks on a marker text or runs slowly."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from urllib.parse import parse_qs, urlparse


class PostgresProxy:
    """``127.0.0.1:<port>`` forwarding to the pgserver Unix socket; ``down()`` refuses and cuts
    every open connection, ``up()`` accepts again on the same port."""

    def __init__(self, pg_uri: str):
        parsed = urlparse(pg_uri)
        self.socket_path = f"{parse_qs(parsed.query)['host'][0]}/.s.PGSQL.{parsed.port or 5432}"
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX)
            server.connect(self.socket_path)
            with self._lock:
                self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def break_model_on(served, marker: str, *, seconds_per_text: float = 0.0) -> None:
    """Make the served model raise ValueError (a text fault) for any pass holding ``marker``, and
    optionally cost ``seconds_per_text`` per text (a slow model for overload tests)."""
    model = served.model
    original = model.predict_with_truncation

    def predict(texts, **kwargs):
        if seconds_per_text:
            time.sleep(seconds_per_text * len(texts))
        if any(marker in t for t in texts):
            raise ValueError("poisoned text")
        return original(texts, **kwargs)

    model.predict_with_truncation = predict
