"""A response leaves `model-runner serve` in one write (head and body together), so a replica killed
mid-answer never leaves its balancer holding forwarded headers it cannot replay."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx

from model_runner.service.server import OneWriteHttpProtocol, _OneWriteTransport, server_for
from tests.service.conftest import READ_TOKEN


class _Recorder:
    def __init__(self):
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data):
        self.writes.append(bytes(data))

    def is_closing(self):
        return self.closed

    def close(self):
        self.closed = True

    def get_extra_info(self, name, default=None):
        return default


HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


def test_a_head_and_its_body_leave_in_one_write_and_a_lone_head_on_the_next_loop_iteration():
    async def scenario():
        loop = asyncio.get_running_loop()
        raw = _Recorder()
        transport = _OneWriteTransport(raw, loop)
        transport.write(HEAD)
        assert raw.writes == []  # held for the body
        transport.write(b"{}")
        assert raw.writes == [HEAD + b"{}"]
        # a head with no body after it in this iteration goes out on the next one
        transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        assert len(raw.writes) == 1
        await asyncio.sleep(0)
        assert raw.writes[-1] == b"HTTP/1.1 204 No Content\r\n\r\n"
        # 100 Continue is never held: the client waits for it before it sends the body
        transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        assert raw.writes[-1] == b"HTTP/1.1 100 Continue\r\n\r\n"
        # closing writes what is held first
        transport.write(HEAD)
        transport.close()
        assert raw.writes[-1] == HEAD and raw.closed
        assert transport.get_extra_info("peername", "x") == "x"  # everything else passes through

    asyncio.run(scenario())


def test_the_service_answers_through_the_one_write_protocol(service_settings):
    from model_runner.service.app import create_app

    app = create_app(service_settings)
    server = server_for(app, service_settings, host="127.0.0.1", port=0, log_level="warning")
    assert server.config.http is OneWriteHttpProtocol
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive()
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        headers = {"Authorization": f"Bearer {READ_TOKEN}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30) as c:
            deadline = time.monotonic() + 60
            while c.get("/health/ready").status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            # several answers on one keep-alive connection, whole and in order
            for text in ("great", "awful", "fine"):
                r = c.post("/inference", json={"messages": [text]})
                assert r.status_code == 200 and len(r.json()["predictions"]) == 1
            assert c.get("/health/live").json() == {"status": "ok"}
    finally:
        server.should_exit = True
        thread.join(timeout=30)
