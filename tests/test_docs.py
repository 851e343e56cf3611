"""The docs stay true to the code and to themselves.

- the settings table of docs/configuration.md and .env.example are generated from the Settings class;
- README.md stays short, names the two commands and shows the screenshots;
- every relative link and image in the README and docs/ points at a file (and heading) that exists;
- no page reads like a work diary.
"""

import re
import unicodedata
from pathlib import Path

import pytest

from model_runner.settings import Settings
from model_runner.settings_doc import (
    CONFIG_DOC,
    TABLE_END,
    TABLE_START,
    env_example,
    markdown_table,
    table_in,
    with_table,
)

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
AIRFLOW_PAGES = [REPO / "airflow" / "README.md", REPO / "airflow" / "dags" / "README.md"]
PAGES = sorted([README, *DOCS.glob("*.md"), *AIRFLOW_PAGES])
SCREENSHOTS = (
    "docs/images/airflow-weekly-retrain.png",
    "docs/images/mlflow-run.png",
    "docs/images/mlflow-champion.png",
    "docs/images/api-docs.png",
    "docs/images/alert-mail.png",
)
REQUIRED_DOCS = (
    "training.md",
    "service.md",
    "operations.md",
    "deployment.md",
    "configuration.md",
    "benchmarks.md",
    "glossary.md",
)
# Docs describe the product as it is, not the work that made it.
DIARY_WORDS = (
    "this session",
    "last session",
    "previous session",
    "next session",
    "we tried",
    "we fixed",
    "earlier attempt",
    "last run",
    "this run's",
    "now does",
    "was fixed",
    "the default now",
    "used to be",
)
LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def _prose(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, with inline code spans blanked."""
    out, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append((number, re.sub(r"`[^`]*`", "``", line)))
    return out


def _links(path: Path) -> list[tuple[int, bool, str]]:
    """(line, is_image, target) of every Markdown link and image in ``path``'s prose."""
    return [
        (number, bang == "!", target)
        for number, line in _prose(path.read_text())
        for bang, _, target in LINK.findall(line)
    ]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading.strip().lower())
    text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    fenced = False
    for line in path.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match and not fenced:
            slug = _slug(match.group(1))
            count = seen.get(slug, 0)
            anchors.add(slug if count == 0 else f"{slug}-{count}")
            seen[slug] = count + 1
    return anchors


def _is_external(target: str) -> bool:
    return re.match(r"^[a-z][a-z0-9+.-]*:", target) is not None


# --- generated settings -----------------------------------------------------------------------------


def test_configuration_settings_table_matches_the_settings_class():
    doc = (REPO / CONFIG_DOC).read_text()
    assert TABLE_START in doc and TABLE_END in doc
    assert table_in(doc) == markdown_table(), (
        f"{CONFIG_DOC} settings table is stale: run `python -m model_runner.settings_doc --write`"
    )
    for name in Settings.model_fields:
        assert f"TWEETPULSE_{name.upper()}" in doc


def test_settings_table_rewrite_keeps_the_page_around_it():
    page = f"# Title\n\nintro\n\n{TABLE_START}\nold table\n{TABLE_END}\n\nafter\n"
    rewritten = with_table(page)
    assert rewritten.startswith("# Title\n\nintro\n\n") and rewritten.endswith(f"{TABLE_END}\n\nafter\n")
    assert table_in(rewritten) == markdown_table()
    assert with_table(rewritten) == rewritten
    with pytest.raises(ValueError):
        with_table("# no markers here\n")


def test_env_example_lists_every_setting():
    assert (REPO / ".env.example").read_text().strip() == env_example().strip()


# --- the README ---------------------------------------------------------------------------------------


def test_readme_names_the_two_front_door_commands():
    readme = README.read_text()
    assert "make demo" in readme and "make test" in readme
    makefile = (REPO / "Makefile").read_text()
    assert "\ntest:" in makefile and "\ndemo:" in makefile


def test_readme_is_short():
    lines = len(README.read_text().splitlines())
    assert lines <= 250, f"README.md has {lines} lines (at most 250): move detail into docs/"


def test_readme_shows_the_screenshots():
    images = {target for _, is_image, target in _links(README) if is_image}
    missing_refs = [shot for shot in SCREENSHOTS if shot not in images]
    assert not missing_refs, f"README.md does not show {missing_refs}"
    absent = [shot for shot in SCREENSHOTS if not (REPO / shot).is_file()]
    assert not absent, f"screenshots missing (make them with `make screenshots`): {absent}"
    for shot in SCREENSHOTS:
        assert (REPO / shot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{shot} is not a PNG"


def test_docs_folder_has_every_page():
    missing = [name for name in REQUIRED_DOCS if not (DOCS / name).is_file()]
    assert not missing, f"docs/ lacks {missing}"
    readme = README.read_text()
    unlinked = [name for name in REQUIRED_DOCS if f"docs/{name}" not in readme]
    assert not unlinked, f"README.md does not link {unlinked}"


# --- links --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_and_images_resolve(page):
    broken = []
    for number, _, target in _links(page):
        if _is_external(target):
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        where = f"{_rel(page)}:{number}: {target}"
        if not dest.exists():
            broken.append(f"{where} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{where} (no heading #{anchor} in {_rel(dest)})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_pointers_to_docs_from_config_files_resolve():
    for name in ("docker-compose.yml", ".env.compose.example", "Makefile"):
        path = REPO / name
        if not path.exists():
            continue
        for doc in re.findall(r"docs/[\w./-]+\.md", path.read_text()):
            assert (REPO / doc).is_file(), f"{name} points at {doc}, which does not exist"


def test_slugs_follow_github():
    assert _slug("Holding up: hostile input, overload, faults") == "holding-up-hostile-input-overload-faults"
    assert _slug("The local stack (`make up`, `make down`)") == "the-local-stack-make-up-make-down"
    assert _slug("How `train` chooses and checks a model") == "how-train-chooses-and-checks-a-model"


# --- wording ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_no_work_diary_wording(page):
    text = page.read_text().lower()
    found = [
        f"{_rel(page)}:{text.count(chr(10), 0, m.start()) + 1}: {word!r}"
        for word in DIARY_WORDS
        for m in re.finditer(r"\b" + re.escape(word) + r"\b", text)
    ]
    assert not found, "docs describe the product as it is, not the work that made it:\n" + "\n".join(found)
