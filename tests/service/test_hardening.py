"""The service holds up: hostile text, a poisoned batch, overload, deadlines, clients that leave,
Postgres down at start-up, SIGTERM with requests in flight. All against uvicorn on loopback."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import httpx
import pytest
from pydantic import SecretStr

from model_runner.service import text_input
from model_runner.service.text_input import char_budget
from tests.service.conftest import ADMIN_TOKEN, READ_TOKEN, serve, wait_until_ready
from tests.service.faults import PostgresProxy, break_model_on

AUTH = {"Authorization": f"Bearer {READ_TOKEN}"}


def _block_inference(live, seconds: float):
    """Occupy the single inference thread, so requests queue behind it."""
    return live.state.executor.submit(time.sleep, seconds)


# --- input at the edge -----------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["\ud83d", "a\x00b", "\udfff lone low", "ok \ud83d\ude00 pair"])
def test_surrogates_and_nul_are_replaced_not_fatal(live, text):
    with live.client() as c:
        r = c.post("/inference", content=_json_with(text), headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 1


def _json_with(text: str) -> bytes:
    # json.dumps would escape a lone surrogate the same way; spelled out to be sure it reaches us raw
    escaped = "".join(
        f"\\u{ord(ch):04x}" if ord(ch) < 32 or 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in text
    )
    return ('{"messages": ["' + escaped + '"]}').encode("utf-8", "surrogatepass")


def test_stored_tweets_with_nul_and_surrogates_are_accepted(live):
    body = b'{"found_by": "q\\u0000x", "tweets": [{"id": 17, "text": "bad \\ud83d and \\u0000 nul"}]}'
    with live.client(token=ADMIN_TOKEN) as c:
        r = c.post("/tweets", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text
        r = c.get("/stats/daily", params={"found_by": "a\x00b"})
        assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/drift", {"until": "0001-01-01T00:00:00"}),
        ("/drift", {"until": "9999-12-31T23:59:59"}),
        ("/review", {"offset": "10000000000000000000000000"}),
        ("/stats/daily", {"until": "0001-01-02"}),
        ("/tweets/summary", {"since": "0001-01-01T00:00:00"}),
        ("/review", {"limit": "100000"}),
        ("/drift", {"days": "nan"}),
    ],
)
def test_out_of_range_parameters_are_422(live, path, params):
    with live.client() as c:
        r = c.get(path, params=params)
    assert r.status_code == 422, (path, params, r.status_code, r.text)


def test_two_thousand_emoji_reach_the_model_no_longer_than_the_budget(live, monkeypatch):
    """2,000 emoji grow to ~46,000 characters when named; what is cleaned and tokenised stays within
    the per-model budget, so the message costs what a long tweet costs (the timing is in make bench)."""
    model = live.state.models.get("sentiment").model
    budget = char_budget(model.max_length, live.state.settings.max_message_chars)
    seen: list[str] = []
    cleaned_raw: list[int] = []
    predict, clean = model.predict_with_truncation, text_input.clean_text

    def spy_predict(texts, **kwargs):
        seen.extend(texts)
        return predict(texts, **kwargs)

    def spy_clean(text):
        cleaned_raw.append(len(text))
        return clean(text)

    monkeypatch.setattr(model, "predict_with_truncation", spy_predict)
    monkeypatch.setattr(text_input, "clean_text", spy_clean)
    with live.client() as c:
        r = c.post("/inference", json={"messages": [f"{time.time_ns()} " + "\U0001f602" * 2000]})
    assert r.status_code == 200 and r.json()["predictions"][0]["truncated"] is True
    assert len(seen) == 1 and budget // 2 < len(seen[0]) <= budget, (len(seen[0]), budget)
    assert "face with tears of joy" in seen[0]
    assert cleaned_raw and max(cleaned_raw) <= 4 * budget < 2000, (cleaned_raw, budget)


# --- one bad message fails one request -------------------------------------------------------------
def test_a_poisoned_request_fails_alone(fresh_settings):
    with serve(fresh_settings) as live:
        break_model_on(live.state.models.get("sentiment"), "POISON")
        stop = time.monotonic() + 4
        good, bad = Counter(), Counter()

        def good_client(i: int) -> None:
            with live.client() as c:
                n = 0
                while time.monotonic() < stop:
                    n += 1
                    r = c.post("/inference", json={"messages": [f"client {i} message {n}", "fine"]})
                    good[r.status_code] += 1

        def poison_client() -> None:
            with live.client() as c:
                while time.monotonic() < stop:
                    r = c.post("/inference", json={"messages": ["POISON", "x"]})
                    bad[r.status_code] += 1

        threads = [threading.Thread(target=good_client, args=(i,)) for i in range(4)]
        threads.append(threading.Thread(target=poison_client))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert set(good) == {200} and good[200] > 20, good
    assert set(bad) == {422} and bad[422] > 5, bad


def test_batch_results_equal_single_results(live):
    texts = [f"text number {i} is {'great' if i % 2 else 'awful'}" for i in range(40)]
    with live.client() as c:
        single = [c.post("/inference", json={"messages": [t]}).json()["predictions"][0] for t in texts]
    live.state.models.batchers["sentiment"].cache.clear()

    def one(t):
        return httpx.post(live.url + "/inference", json={"messages": [t]}, headers=AUTH).json()[
            "predictions"
        ][0]

    with ThreadPoolExecutor(8) as pool:
        batched = list(pool.map(one, texts))
    for a, b in zip(single, batched, strict=True):
        assert a["label"] == b["label"]
        for k in a["scores"]:
            assert abs(a["scores"][k] - b["scores"][k]) < 2e-3  # padding changes float sums


# --- backpressure ----------------------------------------------------------------------------------
def test_open_loop_overload_gets_only_200_and_429(fresh_settings):
    settings = fresh_settings.model_copy(
        update={"max_queue_wait_s": 1.0, "request_deadline_s": 5.0, "inference_cache_size": 0}
    )
    per_request = 16
    with serve(settings) as live:
        batcher = live.state.models.batchers["sentiment"]
        break_model_on(live.state.models.get("sentiment"), "\0never", seconds_per_text=0.002)
        with live.client() as c:  # capacity, measured closed-loop (also teaches admission the rate)
            started = time.perf_counter()
            for i in range(10):
                assert c.post(
                    "/inference", json={"messages": [f"w{i} {j}" for j in range(per_request)]}
                ).is_success
            capacity = 10 / (time.perf_counter() - started)
        rate = 3 * capacity
        peak = [0]

        async def run() -> list[tuple[int, float, str | None]]:
            async with httpx.AsyncClient(base_url=live.url, headers=AUTH, timeout=30) as client:

                async def one(i: int):
                    t0 = time.perf_counter()
                    r = await client.post(
                        "/inference", json={"messages": [f"o{i} {j}" for j in range(per_request)]}
                    )
                    peak[0] = max(peak[0], batcher.waiting_texts)
                    return r.status_code, time.perf_counter() - t0, r.headers.get("retry-after")

                tasks, t_start, i = [], time.perf_counter(), 0
                while (now := time.perf_counter()) - t_start < 4:
                    while i < (now - t_start) * rate:
                        tasks.append(asyncio.create_task(one(i)))
                        i += 1
                    await asyncio.sleep(0.002)
                return await asyncio.gather(*tasks)

        results = asyncio.run(run())
    codes = Counter(code for code, _, _ in results)
    assert set(codes) <= {200, 429}, codes
    assert codes[200] > 0 and codes[429] > 0, codes
    assert all(int(ra) >= 1 for code, _, ra in results if code == 429)
    assert max(t for code, t, _ in results if code == 200) < settings.request_deadline_s
    assert peak[0] <= settings.max_queued_texts


def test_past_the_deadline_the_client_gets_503_and_the_work_leaves_the_queue(fresh_settings):
    settings = fresh_settings.model_copy(update={"request_deadline_s": 0.5})
    with serve(settings) as live, live.client() as c:
        blocker = _block_inference(live, 2.0)
        r = c.post("/inference", json={"messages": ["late"]})
        assert r.status_code == 503 and r.headers["Retry-After"], r.text
        assert r.json()["error"]["type"] == "deadline_exceeded"
        assert live.state.models.batchers["sentiment"].waiting_texts == 0
        blocker.result()


def test_work_of_a_client_that_left_is_dropped(live):
    batcher = live.state.models.batchers["sentiment"]
    blocker = _block_inference(live, 2.0)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(live.url + "/inference", json={"messages": ["gone"] * 10}, headers=AUTH, timeout=0.3)
    deadline = time.monotonic() + 1.5
    while batcher.waiting_texts and time.monotonic() < deadline:
        time.sleep(0.02)
    assert batcher.waiting_texts == 0 and not blocker.done()
    blocker.result()


# --- faults heal -----------------------------------------------------------------------------------
def test_postgres_down_at_start_then_up_becomes_ready_without_restart(service_settings, pg_server):
    db_name = urlparse(service_settings.database_url.get_secret_value()).path.lstrip("/")
    proxy = PostgresProxy(pg_server.get_uri())
    settings = service_settings.model_copy(
        update={
            "database_url": SecretStr(proxy.url(db_name)),
            "startup_retry_max_s": 0.5,
            "db_connect_timeout_s": 1,
        }
    )
    with serve(settings, wait_ready=False) as live, live.client() as c:
        deadline = time.monotonic() + 60
        while c.get("/health/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        ready = c.get("/health/ready").json()
        assert ready["status"] == "degraded" and ready["components"]["database"] != "ok", ready
        assert c.post("/inference", json={"messages": ["served without the database"]}).status_code == 200
        r = c.get("/review")
        assert r.status_code == 503 and r.headers["Retry-After"], r.text
        assert r.json()["error"]["type"] == "database_unavailable"
        proxy.up()
        deadline = time.monotonic() + 30
        while c.get("/health/ready").json()["status"] != "ready" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert c.get("/health/ready").json()["status"] == "ready"
        assert c.get("/review").status_code == 200
        proxy.down()  # and a database that goes away again is a 503, not a 500
        r = c.get("/review")
        assert r.status_code == 503, r.text
    proxy.down()


def test_sigterm_lets_eight_requests_in_flight_finish(service_settings):
    from model_runner.service.app import create_app
    from model_runner.service.server import server_for

    app = create_app(service_settings)
    server = server_for(app, service_settings, host="127.0.0.1", port=0, log_level="warning")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"

    class Live:
        def __init__(self):
            self.url, self.app = url, app

        def client(self):
            return httpx.Client(base_url=url, headers=AUTH)

        @property
        def state(self):
            return app.state.runner

    live = Live()
    wait_until_ready(live)
    _block_inference(live, 1.0)
    with ThreadPoolExecutor(8) as pool:
        futures = [
            pool.submit(
                httpx.post,
                url + "/inference",
                json={"messages": [f"in flight {i}"]},
                headers=AUTH,
                timeout=30,
            )
            for i in range(8)
        ]
        time.sleep(0.4)
        server.handle_exit(signal.SIGTERM, None)
        assert app.state.runner.draining
        codes = [f.result().status_code for f in futures]
    thread.join(timeout=30)
    assert codes == [200] * 8
    assert not thread.is_alive()
