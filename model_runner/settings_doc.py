"""Render the settings as the README table and as ``.env.example`` (tests keep both in sync).

``python -m model_runner.settings_doc`` prints the table; ``--write`` rewrites the table in README.md
and ``.env.example`` in place (run it after adding a setting).
"""

from __future__ import annotations

import sys
from pathlib import Path

from model_runner.settings import Settings

PREFIX = Settings.model_config["env_prefix"]


def _env_names(name: str, field) -> list[str]:
    alias = field.validation_alias
    if alias is not None and hasattr(alias, "choices"):
        return [str(c) for c in alias.choices]
    return [f"{PREFIX}{name}".upper()]


def _default(field) -> str:
    value = field.default
    if value is None:
        return ""
    return str(value)


def rows() -> list[tuple[str, str, str]]:
    out = []
    for name, field in Settings.model_fields.items():
        names = _env_names(name, field)
        out.append(
            (
                " / ".join(f"`{n}`" for n in names),
                f"`{_default(field)}`" if _default(field) else "(unset)",
                field.description or "",
            )
        )
    return out


def markdown_table() -> str:
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows()]
    return "\n".join(lines)


def env_example() -> str:
    lines = ["# Every tweetpulse setting with its default (commented out). Copy to .env and edit.", ""]
    for name, field in Settings.model_fields.items():
        lines.append(f"# {field.description}")
        lines.append(f"# {_env_names(name, field)[0]}={_default(field)}")
        lines.append("")
    return "\n".join(lines)


def write(repo: Path) -> None:
    readme = repo / "README.md"
    text = readme.read_text()
    start = text.index("| variable | default | meaning |")
    end = text.index("\n\n", start)
    readme.write_text(text[:start] + markdown_table() + text[end:])
    (repo / ".env.example").write_text(env_example().strip() + "\n")


if __name__ == "__main__":
    if "--write" in sys.argv:
        write(Path.cwd())
    else:
        print(markdown_table())
