"""``make screenshots``: the docs' pictures, taken from the running local stack with headless Chromium.

Needs a stack that has run the demo (``make up`` + ``make demo``): a ``weekly_retrain`` run, a registered
model with the ``champion`` alias and a mail in the mailbox. Finds the URLs through the Airflow, MLflow
and ModelRunner APIs, drives Debian's ``chromium`` with Playwright (``executable_path``, no browser
download) and writes 1280x800 PNGs to ``docs/images/``:

- ``airflow-weekly-retrain.png``: the Airflow graph of the latest successful ``weekly_retrain`` run
- ``mlflow-run.png``: the MLflow run of the champion, its evaluation plots open
- ``mlflow-champion.png``: the registered model with its ``champion`` alias
- ``api-docs.png``: the ModelRunner's ``/docs``
- ``alert-mail.png``: the HTML part of the newest mail in the mailbox, rendered

Run with the service environment: ``.venv/bin/python infra/stack/screenshots.py [--only NAME ...]``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import httpx
from config import REPO, StackConfig
from services import airflow_url, mlflow_url, runner_url

OUT = REPO / "docs" / "images"
VIEWPORT = {"width": 1280, "height": 800}
TASK = "sentiment"


class ShotError(RuntimeError):
    pass


@dataclass(frozen=True)
class Champion:
    model: str
    version: str
    run_id: str
    experiment_id: str


def chromium_path() -> str:
    """Debian's chromium (``apt-get install chromium``), or ``$CHROMIUM``."""
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise ShotError(
            "no chromium on PATH: install Debian's package (as root: apt-get install -y chromium)"
        )
    return found


def check_stack(cfg: StackConfig) -> None:
    for name, url in {
        "ModelRunner": f"{runner_url(cfg)}/health/live",
        "MLflow": f"{mlflow_url(cfg)}/health",
        "Airflow": f"{airflow_url(cfg)}/api/v2/monitor/health",
    }.items():
        try:
            httpx.get(url, timeout=5).raise_for_status()
        except httpx.HTTPError as exc:
            raise ShotError(
                f"{name} does not answer at {url} ({exc}): start the stack with `make up`"
            ) from exc


def latest_run(api, dag_id: str) -> str:
    r = api.request("GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"order_by": "-run_after", "limit": 20})
    r.raise_for_status()
    runs = r.json()["dag_runs"]
    done = [run for run in runs if run["state"] == "success"] or runs
    if not done:
        raise ShotError(f"no {dag_id} run yet: run `make demo` first")
    return done[0]["dag_run_id"]


def champion(cfg: StackConfig, model: str) -> Champion:
    base = f"{mlflow_url(cfg)}/api/2.0/mlflow"
    r = httpx.get(f"{base}/registered-models/alias", params={"name": model, "alias": "champion"}, timeout=30)
    if r.status_code == 404:
        raise ShotError(f"{model} has no champion alias: run `make demo` first")
    r.raise_for_status()
    version = r.json()["model_version"]
    run = httpx.get(f"{base}/runs/get", params={"run_id": version["run_id"]}, timeout=30)
    run.raise_for_status()
    return Champion(model, version["version"], version["run_id"], run.json()["run"]["info"]["experiment_id"])


def html_part(message: EmailMessage) -> tuple[str, dict[str, bytes]]:
    """The mail's HTML body and its inline images by Content-ID (``cid:`` links)."""
    body = message.get_body(preferencelist=("html",))
    if body is None:
        raise ShotError("the mail has no HTML part")
    inline = {}
    for part in message.walk():
        cid = part.get("Content-ID")
        if cid and part.get_content_maintype() == "image":
            inline[cid.strip("<>")] = part.get_payload(decode=True)
    return body.get_content(), inline


def newest_mail(mail_dir: Path) -> Path:
    found = sorted(mail_dir.glob("*.eml"), key=lambda p: (p.stat().st_mtime, p.name))
    if not found:
        raise ShotError(f"no mail in {mail_dir}: run `make demo` (its inspector run sends the digest)")
    # an alert reads better than the digest when there is one; otherwise the newest mail
    alerts = [p for p in found if "digest" not in p.name.lower()]
    return (alerts or found)[-1]


def mail_page(path: Path, folder: Path) -> Path:
    """Writes the mail's HTML (with its inline images) as a file Chromium can open; returns it."""
    with path.open("rb") as fh:
        message = BytesParser(policy=policy.default).parse(fh)
    html, inline = html_part(message)
    for i, (cid, data) in enumerate(inline.items()):
        name = f"inline-{i}"
        (folder / name).write_bytes(data)
        html = html.replace(f"cid:{cid}", name)
    header = "".join(
        f"<div><b>{k}:</b> {_escape(str(message.get(k, '')))}</div>"
        for k in ("From", "To", "Subject", "Date")
    )
    page = folder / "mail.html"
    page.write_text(
        '<!doctype html><meta charset="utf-8"><div style="font:13px sans-serif;color:#444;'
        f'border-bottom:1px solid #ccc;padding:8px 12px;background:#f6f6f6">{header}</div>{html}'
    )
    return page


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _settle(page, selector: str | None = None, extra_s: float = 1.5) -> None:
    from playwright.sync_api import TimeoutError as PageTimeout

    # a page that keeps polling never goes idle: then the selector and the pause decide
    with contextlib.suppress(PageTimeout):
        page.wait_for_load_state("networkidle", timeout=20_000)
    if selector:
        page.wait_for_selector(selector, timeout=30_000)
    time.sleep(extra_s)


def _optimise(path: Path) -> None:
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(path) as image:
        image.load()
    image.save(path, optimize=True)


def shoot_airflow(page, cfg: StackConfig, api) -> None:
    run_id = latest_run(api, "weekly_retrain")
    # the UI reads its session from the same JWT the REST API hands out (cookie _token)
    page.context.add_cookies([{"name": "_token", "value": api.token(), "url": airflow_url(cfg)}])
    page.goto(f"{airflow_url(cfg)}/dags/weekly_retrain/runs/{run_id}")
    _settle(page, "text=publish_champion", extra_s=1)
    # the graph says more than the grid about the pipeline: the tasks to retrain, then per task (a mapped
    # group) start, the deferred wait, success or one alert, and the champion Asset on a promotion
    page.click("button[aria-label^='Show Graph']")
    _settle(page, ".react-flow__node", extra_s=3)


# MLflow 3 opens its assistant panel on a first visit and starts in its GenAI view: closed and "Model
# training" instead, so the pictures show the run and the registry
MLFLOW_STORAGE = {
    "mlflow.assistant.panelOpen_v1": "false",
    "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true",
}


def _mlflow_page(page, url: str) -> None:
    script = "".join(f"localStorage.setItem({k!r}, {v!r});" for k, v in MLFLOW_STORAGE.items())
    page.add_init_script(script)
    page.goto(url)
    _settle(page, extra_s=1)
    training = page.get_by_role("radio", name="Model training")
    if not training.count():
        training = page.get_by_text("Model training", exact=True)
    if training.count():
        training.first.click()
        page.goto(url)


def shoot_mlflow_run(page, cfg: StackConfig, champ: Champion) -> None:
    _mlflow_page(
        page,
        f"{mlflow_url(cfg)}/#/experiments/{champ.experiment_id}/runs/{champ.run_id}"
        "/artifactPath/evaluation/confusion_matrix.png",
    )
    _settle(page, "img[src^='blob:']", extra_s=2)


def shoot_mlflow_model(page, cfg: StackConfig, champ: Champion) -> None:
    _mlflow_page(page, f"{mlflow_url(cfg)}/#/models/{champ.model}")
    _settle(page, "text=champion", extra_s=2)


def shoot_api_docs(page, cfg: StackConfig) -> None:
    # the service serves Swagger UI's assets itself (model_runner/service/docs_assets.py): no CDN
    page.goto(f"{runner_url(cfg)}/docs")
    _settle(page, ".opblock", extra_s=1)


def shoot_mail(page, cfg: StackConfig, folder: Path) -> None:
    mail = newest_mail(cfg.mail_dir)
    print(f"   mail: {mail}")
    page.goto(mail_page(mail, folder).as_uri())
    _settle(page, extra_s=0.5)


def main(argv: list[str] | None = None) -> int:
    shots = ("airflow-weekly-retrain", "mlflow-run", "mlflow-champion", "api-docs", "alert-mail")
    parser = argparse.ArgumentParser(prog="screenshots", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=shots, default=list(shots))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    cfg = StackConfig()
    try:
        from playwright.sync_api import sync_playwright
        from stack import airflow_api

        check_stack(cfg)
        api = airflow_api(cfg)
        champ = functools.cache(lambda: champion(cfg, f"tweetpulse-{TASK}"))
        args.out.mkdir(parents=True, exist_ok=True)
        failed = []
        with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
            plan: dict[str, Callable] = {
                "airflow-weekly-retrain": lambda page: shoot_airflow(page, cfg, api),
                "mlflow-run": lambda page: shoot_mlflow_run(page, cfg, champ()),
                "mlflow-champion": lambda page: shoot_mlflow_model(page, cfg, champ()),
                "api-docs": lambda page: shoot_api_docs(page, cfg),
                "alert-mail": lambda page: shoot_mail(page, cfg, Path(tmp)),
            }
            browser = pw.chromium.launch(executable_path=chromium_path(), headless=True)
            for name in args.only:
                context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
                page = context.new_page()
                path = args.out / f"{name}.png"
                try:
                    plan[name](page)
                    page.screenshot(path=str(path))
                    _optimise(path)
                    print(f"==> {path} ({path.stat().st_size // 1024} KiB)", flush=True)
                except Exception as exc:  # one broken page should not cost the other pictures
                    failed.append(name)
                    print(f"error: {name}: {exc}", file=sys.stderr)
                finally:
                    context.close()
            browser.close()
    except (ShotError, httpx.HTTPError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
