"""``/docs`` and ``/redoc`` work offline, and the OpenAPI document states auth and error answers.

The browser tests run the real app under uvicorn on loopback (``serve``) and drive Debian's headless
``chromium`` over the DevTools protocol (``websockets``, already a service dependency). The browser
cannot reach anything but loopback (a dead proxy and a resolver that knows no names), and every
request the page or its workers make is recorded: all of them must go to the service and succeed.
Against FastAPI's default pages (assets on a CDN) Swagger UI and ReDoc would stay blank and these
tests fail.

Chromium: ``$CHROMIUM``, ``chromium`` or ``chromium-browser`` on PATH (``apt-get install chromium``;
GitHub's Ubuntu runners ship ``/usr/bin/chromium``). Without one the browser tests skip on a
developer machine and fail under CI (``$CI`` set), so CI never passes them silently.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from PIL import Image
from websockets.sync.client import connect

from model_runner.service.auth import ADMIN_SCHEME, DOCS_ASSETS, READ_POSTS, READ_SCHEME
from model_runner.service.openapi_docs import ERROR_REF
from tests.service.conftest import READ_TOKEN, make_settings, new_database, serve

VIEWPORT = {"width": 1280, "height": 800}
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-first-run",
    "--no-default-browser-check",
    "--mute-audio",
    # offline: names resolve to nothing and anything not on loopback goes to a closed port
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9",
    f"--window-size={VIEWPORT['width']},{VIEWPORT['height']}",
    "--remote-debugging-port=0",
)
METHODS = ("get", "put", "post", "delete", "patch")


# -- the browser -----------------------------------------------------------------------------------


def chromium_path() -> str:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    message = "no chromium on PATH (Debian: apt-get install -y chromium; or set $CHROMIUM)"
    if os.environ.get("CI") or os.environ.get("TWEETPULSE_REQUIRE_BROWSER"):
        pytest.fail(f"{message}: make test and CI must run the offline docs tests")
    pytest.skip(message)


class Browser:
    """Headless Chromium, one page, driven over the DevTools protocol; records every request."""

    def __init__(self, executable: str, profile: Path):
        self.profile = profile
        self.log = open(profile.parent / "chromium.log", "w+b")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.requests: list[str] = []
        self.responses: dict[str, int] = {}
        self.failures: list[tuple[str, str]] = []
        self._ids: dict[str, str] = {}
        self._next = 0
        self._stack = contextlib.ExitStack()
        try:
            self.ws = self._stack.enter_context(connect(self._devtools_url(), max_size=None, open_timeout=30))
            target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
                "sessionId"
            ]
            self._watch(self.session)
            self.send("Page.enable", session=self.session)
            self.send(
                "Emulation.setDeviceMetricsOverride",
                {**VIEWPORT, "deviceScaleFactor": 1, "mobile": False},
                session=self.session,
            )
        except Exception:
            self.close()
            raise

    def _devtools_url(self, timeout: float = 60) -> str:
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if port_file.exists() and len(lines := port_file.read_text().split()) >= 2:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
            time.sleep(0.05)
        self.log.seek(0)
        raise RuntimeError(f"chromium did not start: {self.log.read()[-3000:].decode(errors='replace')}")

    def _watch(self, session: str) -> None:
        """Record the requests of ``session``'s target and of the workers it starts."""
        self.send("Network.enable", session=session)
        self.send(
            "Target.setAutoAttach",
            {"autoAttach": True, "waitForDebuggerOnStart": True, "flatten": True},
            session=session,
        )

    def send(self, method: str, params: dict | None = None, *, session: str | None = None, timeout=60):
        self._next += 1
        wanted = self._next
        message = {"id": wanted, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            data = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if data.get("id") == wanted:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                return data.get("result", {})
            if "method" in data:
                self._event(data["method"], data.get("params", {}))

    def _event(self, method: str, params: dict) -> None:
        if method == "Network.requestWillBeSent":
            self._ids[params["requestId"]] = params["request"]["url"]
            self.requests.append(params["request"]["url"])
        elif method == "Network.responseReceived":
            self.responses[params["response"]["url"]] = params["response"]["status"]
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            self.failures.append((self._ids.get(params["requestId"], "?"), params.get("errorText", "")))
        elif method == "Target.attachedToTarget":  # a worker or frame: record its requests too
            session = params["sessionId"]
            for name, args in (
                ("Network.enable", {}),
                (
                    "Target.setAutoAttach",
                    {"autoAttach": True, "waitForDebuggerOnStart": True, "flatten": True},
                ),
                ("Runtime.runIfWaitingForDebugger", {}),
            ):
                self._next += 1  # answers arrive later and are dropped: nothing waits for them
                self.ws.send(
                    json.dumps({"id": self._next, "method": name, "params": args, "sessionId": session})
                )

    def goto(self, url: str) -> None:
        self.send("Page.navigate", {"url": url}, session=self.session)

    def evaluate(self, expression: str):
        result = self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=self.session
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 90):
        """Poll ``expression`` until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if value := self.evaluate(expression):
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {expression}")

    def settle(self, quiet_s: float = 1.0, timeout: float = 30) -> None:
        """Wait until no new request started for ``quiet_s``."""
        deadline = time.monotonic() + timeout
        seen, since = len(self.requests), time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
            self.evaluate("1")  # drains events
            if len(self.requests) != seen:
                seen, since = len(self.requests), time.monotonic()
            time.sleep(0.1)

    def screenshot(self, path: Path) -> Image.Image:
        data = self.send("Page.captureScreenshot", {"format": "png"}, session=self.session)["data"]
        path.write_bytes(base64.b64decode(data))
        return Image.open(io.BytesIO(path.read_bytes()))

    def close(self) -> None:
        try:
            self._stack.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)
            self.log.close()


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def docs_settings(tmp_path_factory, pg_server, tiny_bert):
    """A service with no champion: the docs need neither a model nor readiness."""
    home = tmp_path_factory.mktemp("docs")
    return make_settings(home, new_database(pg_server), tiny_bert)


@pytest.fixture(scope="module")
def docs_server(docs_settings):
    with serve(docs_settings, wait_ready=False) as server:
        yield server


@pytest.fixture(scope="module")
def spec(docs_server) -> dict:
    with docs_server.client(token=None) as c:
        r = c.get("/openapi.json")
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
def browser(tmp_path):
    executable = chromium_path()
    profile = tmp_path / "profile"
    profile.mkdir()
    chrome = Browser(executable, profile)
    try:
        yield chrome
    finally:
        chrome.close()


def operations(spec: dict) -> list[tuple[str, str, dict]]:
    return [(m, p, op) for p, item in spec["paths"].items() for m, op in item.items() if m in METHODS]


def assert_stayed_local(browser: Browser, base: str) -> None:
    here = urlsplit(base)
    assert browser.requests, "the page made no request at all"
    outside = [
        u
        for u in browser.requests
        if urlsplit(u).scheme not in ("data", "blob", "about")
        and (urlsplit(u).hostname, urlsplit(u).port) != (here.hostname, here.port)
    ]
    assert not outside, f"requests that left the service: {outside}"
    assert not browser.failures, f"failed requests: {browser.failures}"
    bad = {u: s for u, s in browser.responses.items() if s >= 400}
    assert not bad, f"error answers: {bad}"


def assert_not_blank(image: Image.Image) -> None:
    assert image.size == (VIEWPORT["width"], VIEWPORT["height"])
    grey = image.convert("L")
    inked = sum(count for level, count in enumerate(grey.histogram()) if level < 200)
    assert inked / (image.size[0] * image.size[1]) > 0.01, "the screenshot is (nearly) blank"


# -- the pages in a browser ------------------------------------------------------------------------


def test_swagger_ui_renders_offline_with_every_operation_and_authorize(docs_server, spec, browser, tmp_path):
    ops = operations(spec)
    protected = [(m, p) for m, p, op in ops if op.get("security")]
    browser.goto(f"{docs_server.url}/docs")
    shown = browser.wait_for(
        f"""(() => {{
            const ops = [...document.querySelectorAll('.opblock')].map(b => [
                b.querySelector('.opblock-summary-method')?.textContent.trim().toLowerCase(),
                b.querySelector('.opblock-summary-path')?.getAttribute('data-path')]);
            return ops.length >= {len(ops)} ? ops : null;
        }})()"""
    )
    assert sorted(map(tuple, shown)) == sorted((m, p) for m, p, _ in ops)
    assert ("post", "/inference") in map(tuple, shown)
    # a lock on exactly the operations that take a token; the Authorize button offers both tokens
    locks = browser.evaluate("document.querySelectorAll('.opblock .authorization__btn').length")
    assert locks == len(protected) and 0 < locks < len(ops)
    assert browser.evaluate("!!document.querySelector('.auth-wrapper .btn.authorize')")
    browser.evaluate("document.querySelector('.auth-wrapper .btn.authorize').click()")
    dialog = browser.wait_for(
        "document.querySelectorAll('.modal-ux .auth-container').length >= 2"
        " && document.querySelector('.modal-ux').innerText"
    )
    assert ADMIN_SCHEME in dialog and READ_SCHEME in dialog
    browser.evaluate("document.querySelector('.modal-ux .btn-done, .modal-ux .close-modal').click()")
    browser.settle()
    assert_not_blank(browser.screenshot(tmp_path / "docs.png"))
    assert_stayed_local(browser, docs_server.url)
    assert any(urlsplit(u).path.startswith(DOCS_ASSETS + "/") for u in browser.requests)


def test_redoc_renders_offline_with_every_operation(docs_server, spec, browser, tmp_path):
    ops = operations(spec)
    browser.goto(f"{docs_server.url}/redoc")
    sections = browser.wait_for(
        f"""(() => {{
            const found = document.querySelectorAll('[data-section-id^="operation/"]');
            return found.length >= {len(ops)} ? found.length : 0;
        }})()"""
    )
    assert sections == len(ops)
    text = browser.evaluate("document.body.innerText")
    assert "/inference" in text
    browser.settle()
    assert_not_blank(browser.screenshot(tmp_path / "redoc.png"))
    assert_stayed_local(browser, docs_server.url)


# -- the pages over HTTP ---------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_every_url_of_the_pages_is_served_here(docs_server, page):
    """The favicon, scripts and styles: local URLs (no host) that answer 200."""
    with docs_server.client(token=None) as c:
        html = c.get(page).text
        urls = re.findall(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']""", html)
        urls += re.findall(r"""url\s*:\s*['"]([^'"]+)['"]""", html)  # Swagger UI's openapi url
        assert any("favicon" in u for u in urls), html
        for url in urls:
            assert not urlsplit(url).netloc and not url.startswith("//"), url
            assert c.get(url).status_code == 200, url


def test_docs_assets_follow_the_docs_rule(docs_settings):
    asset = f"{DOCS_ASSETS}/swagger/swagger-ui-bundle.js"
    with serve(docs_settings, wait_ready=False) as server, server.client(token=None) as c:
        assert c.get(asset).status_code == 200
        assert c.get("/redoc/logo-mini.svg").status_code == 200
    closed = docs_settings.model_copy(update={"public_docs": False})
    with serve(closed, wait_ready=False) as server, server.client(token=None) as c:
        for path in ("/docs", "/redoc", "/redoc/logo-mini.svg", asset, f"{DOCS_ASSETS}/fastapi/favicon.png"):
            r = c.get(path)
            assert r.status_code == 401, (path, r.status_code)
            assert r.json()["error"]["type"] == "unauthorized"
        r = c.get(asset, headers={"Authorization": f"Bearer {READ_TOKEN}"})
        assert r.status_code == 200 and r.headers["content-type"].startswith(
            ("text/javascript", "application/javascript")
        )


# -- the OpenAPI document --------------------------------------------------------------------------


def test_bearer_schemes_and_per_operation_security(spec):
    schemes = spec["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} == {"http"} and {s["scheme"] for s in schemes.values()} == {
        "bearer"
    }
    assert set(schemes) == {ADMIN_SCHEME, READ_SCHEME}
    assert "security" not in spec  # no global requirement: each operation states its own
    for method, path, op in operations(spec):
        if path.startswith("/health/"):
            assert not op.get("security"), (method, path)
            assert not {"401", "403"} & set(op["responses"]), (method, path)
        elif method == "get" or path in READ_POSTS:
            assert op["security"] == [{READ_SCHEME: []}, {ADMIN_SCHEME: []}], (method, path)
        else:
            assert op["security"] == [{ADMIN_SCHEME: []}], (method, path)


def _schema_of(answer: dict) -> dict:
    return answer["content"]["application/json"]["schema"]


def test_error_answers_are_documented_with_the_error_schema(spec):
    schemas = spec["components"]["schemas"]
    body = schemas[ERROR_REF.rsplit("/", 1)[1]]
    assert body["required"] == ["error"]
    detail = schemas[body["properties"]["error"]["$ref"].rsplit("/", 1)[1]]
    assert set(detail["required"]) == {"type", "message"} and detail.get("additionalProperties") is True
    assert "HTTPValidationError" not in schemas  # the service never answers FastAPI's default 422
    for method, path, op in operations(spec):
        answers = op["responses"]
        if op.get("security"):
            assert {"401", "403"} <= set(answers), (method, path)
        if "requestBody" in op:
            assert {"413", "422"} <= set(answers), (method, path)
        if op.get("parameters"):
            assert "422" in answers, (method, path)
        for status, answer in answers.items():
            if status.startswith(("4", "5")) and not path.startswith("/health/"):
                assert _schema_of(answer) == {"$ref": ERROR_REF}, (method, path, status)
                assert answer["description"] not in ("Additional Response", "Validation Error")
    inference = spec["paths"]["/inference"]["post"]["responses"]
    assert {"401", "403", "413", "422", "429", "503"} <= set(inference)
    assert "Retry-After" in inference["429"]["headers"]
    assert "WWW-Authenticate" in inference["401"]["headers"]
    # /health/ready's 503 keeps its own body
    assert _schema_of(spec["paths"]["/health/ready"]["get"]["responses"]["503"])["$ref"].endswith(
        "/Readiness"
    )


def test_real_error_answers_fit_the_documented_schema(docs_server, spec):
    """The body the handlers send is the documented one: 401, 403 and 422 from the live service."""
    with docs_server.client(token=None) as anon, docs_server.client(token=READ_TOKEN) as reader:
        answers = {
            401: anon.post("/inference", json={"messages": ["hi"]}),
            403: reader.post("/train", json={}),
            422: reader.post("/inference", json={"messages": "not a list"}),
        }
    required = set(spec["components"]["schemas"]["ErrorDetail"]["required"])
    for status, r in answers.items():
        assert r.status_code == status, r.text
        assert set(r.json()) == {"error"} and required <= set(r.json()["error"]), r.text
        assert str(status) in spec["paths"][urlsplit(str(r.url)).path]["post"]["responses"]
    assert answers[401].headers["WWW-Authenticate"].startswith("Bearer")
