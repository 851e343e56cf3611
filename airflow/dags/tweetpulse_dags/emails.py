"""HTML bodies of the alert and digest e-mails. Every tweet and error text is escaped: it is untrusted."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape
from typing import Any

_STYLE = "font-family:sans-serif;font-size:14px;color:#222"
_CELL = "padding:2px 10px;border-bottom:1px solid #ddd;text-align:left"


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def facts_table(facts: Iterable[tuple[str, Any]]) -> str:
    rows = "".join(
        f"<tr><th style='{_CELL}'>{escape(str(k))}</th><td style='{_CELL}'>{escape(str(v))}</td></tr>"
        for k, v in facts
    )
    return f"<table style='border-collapse:collapse'>{rows}</table>"


def link(url: str | None, text: str) -> str:
    if not url or not url.startswith(("http://", "https://")):
        return escape(text)
    return f"<a href='{escape(url, quote=True)}'>{escape(text)}</a>"


def summary_section(summary: Mapping[str, Any] | None, heading: str = "What people said") -> str:
    """Volume and class shares, and for each class the tweets nearest its centroid (extractive)."""
    if not summary:
        return f"<h3>{escape(heading)}</h3><p>No summary available.</p>"
    if not summary.get("volume"):
        return f"<h3>{escape(heading)}</h3><p>No inspected tweets in this period.</p>"
    shares = ", ".join(f"{escape(label)} {pct(share)}" for label, share in summary.get("shares", {}).items())
    parts = [
        f"<h3>{escape(heading)}</h3>",
        f"<p>{summary['volume']} tweets; {shares};"
        f" mean confidence {pct(summary.get('mean_confidence'))}.</p>",
    ]
    for cls in summary.get("classes", []):
        quotes = "".join(
            f"<li>&ldquo;{escape(ex['text'])}&rdquo; &mdash;"
            f" @{escape(str(ex.get('author') or 'unknown'))}</li>"
            for ex in cls.get("examples", [])
        )
        head = f"<b>{escape(cls['label'])}</b> ({cls['count']} tweets, {pct(cls['share'])})"
        parts.append(f"<p>{head}:</p><ul>{quotes}</ul>")
    return "".join(parts)


def summary_text(summary: Mapping[str, Any] | None) -> str:
    """The same summary as log lines (the task log carries what the e-mail says)."""
    if not summary or not summary.get("volume"):
        return "no inspected tweets in this period"
    shares = ", ".join(f"{k} {pct(v)}" for k, v in summary["shares"].items())
    lines = [f"{summary['volume']} tweets: {shares}"]
    for cls in summary.get("classes", []):
        for ex in cls.get("examples", []):
            lines.append(f"  [{cls['label']}] {ex['text'][:140]}")
    return "\n".join(lines)


def page(
    title: str, *, intro: str = "", facts: Iterable[tuple[str, Any]] = (), sections: Iterable[str] = ()
) -> str:
    body = "".join(sections)
    intro_html = f"<p>{escape(intro)}</p>" if intro else ""
    return (
        f"<html><body style='{_STYLE}'><h2>{escape(title)}</h2>{intro_html}{facts_table(facts)}{body}"
        "<p style='color:#888;font-size:12px'>Sent by the tweetpulse Airflow DAGs.</p></body></html>"
    )
