"""The demo's summary wording and mail listing, and the screenshots' mail rendering, without a stack."""

from __future__ import annotations

import os
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

STACK = Path(__file__).resolve().parents[2] / "infra" / "stack"


@pytest.fixture
def stack_modules(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(STACK))
    for name in ("TWEETPULSE_DEMO_FULL", "TWEETPULSE_STACK_DEMO_FULL", "TWEETPULSE_STACK_DEMO_CONF"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TWEETPULSE_HOME", str(tmp_path / "home"))
    import config
    import demo
    import screenshots

    return config, demo, screenshots


def _mail(folder: Path, name: str, subject: str, mtime: float, html: str = "<p>hello</p>") -> Path:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = "tweetpulse@localhost"
    message["To"] = "ml-team@localhost"
    message.set_content("hello")
    message.add_alternative(html, subtype="html")
    path = folder / name
    path.write_bytes(bytes(message))
    os.utime(path, (mtime, mtime))
    return path


def test_the_full_adapters_are_the_model_runners_default(stack_modules):
    config, _, _ = stack_modules
    from model_runner.settings import Settings

    assert config.StackConfig().full_adapters == Settings.model_fields["adapters"].default


def test_the_quick_demo_says_what_it_trained_and_how_to_get_the_full_model(stack_modules):
    config, demo, _ = stack_modules
    cfg = config.StackConfig()
    adapters = cfg.demo_params()["adapters"]
    assert adapters == ["linear", "mlp"]
    assert demo.trained_what(adapters, cfg).startswith("quick demo: cross-validates heads (linear, mlp)")
    text = "\n".join(demo.quality_note(adapters, "mlp", 6.04, cfg))
    assert "quick demo: heads (linear, mlp) on a frozen encoder, retrain took 6.0 min; chosen: mlp" in text
    assert "make demo TWEETPULSE_DEMO_FULL=1" in text
    assert '{"adapters": ["linear", "mlp", "finetune", "distill"]}' in text
    assert f"macro recall ~{cfg.full_macro_recall:.2f}" in text


def test_demo_full_trains_the_default_adapters(stack_modules, monkeypatch):
    config, demo, _ = stack_modules
    monkeypatch.setenv("TWEETPULSE_DEMO_FULL", "1")
    cfg = config.StackConfig()
    assert cfg.demo_params() == {"adapters": ["linear", "mlp", "finetune", "distill"]}
    assert demo.trained_what(cfg.demo_params()["adapters"], cfg).startswith("full training")
    note = demo.quality_note(cfg.demo_params()["adapters"], "distill", 41.0, cfg)
    assert note == ["full training (linear, mlp, finetune, distill): retrain took 41.0 min; chosen: distill"]
    assert cfg.inspector_params() == {"digest": "now"}


def test_the_mail_listing_puts_the_newest_first_and_marks_this_runs_mails(stack_modules, tmp_path):
    _, demo, _ = stack_modules
    folder = tmp_path / "mail"
    folder.mkdir()
    now = time.time()
    old = _mail(folder, "a-old.eml", "[tweetpulse] Weekly retrain failed", now - 3600)
    new = _mail(folder, "b-digest.eml", "[tweetpulse] Daily digest 2026-12-02: 110 tweets", now)
    found = demo.mails(folder)
    assert found == [old, new]
    lines = demo.mail_lines(found, since=now - 60, digest="sent")
    assert lines[0] == "2 in the mailbox, 1 from this run (daily digest: sent):"
    assert lines[1] == f"  new  {new}"
    assert lines[2].strip() == "[tweetpulse] Daily digest 2026-12-02: 110 tweets"
    assert lines[3] == f"  old  {old}"
    assert demo.mail_lines([], since=now, digest="already_sent") == [
        "no mail yet (the digest task said: already_sent)"
    ]
    assert demo.mails(tmp_path / "missing") == []


def test_the_screenshot_of_a_mail_renders_its_html_with_inline_images(stack_modules, tmp_path):
    _, _, screenshots = stack_modules
    folder = tmp_path / "mail"
    folder.mkdir()
    _mail(folder, "1-digest.eml", "digest", time.time() - 10)
    alert = _mail(folder, "2-alert.eml", "[tweetpulse] negative share", time.time(), '<img src="cid:chart">')
    message = EmailMessage()
    message.set_content("x")
    message.add_alternative('<p>see <img src="cid:chart"></p>', subtype="html")
    message.get_payload()[1].add_related(b"\x89PNG fake", maintype="image", subtype="png", cid="<chart>")
    related = folder / "3-related.eml"
    related.write_bytes(bytes(message))
    assert screenshots.newest_mail(folder) == related
    page = screenshots.mail_page(related, tmp_path)
    html = page.read_text()
    assert 'src="inline-0"' in html and (tmp_path / "inline-0").read_bytes() == b"\x89PNG fake"
    assert screenshots.mail_page(alert, tmp_path).read_text().count("Subject:") == 1
