"""The README's settings table and .env.example are generated from the Settings class: no drift."""

from pathlib import Path

from model_runner.settings import Settings
from model_runner.settings_doc import env_example, markdown_table

REPO = Path(__file__).resolve().parents[1]


def test_readme_settings_table_matches_the_settings_class():
    readme = (REPO / "README.md").read_text()
    assert markdown_table() in readme, (
        "README settings table is stale: paste `python -m model_runner.settings_doc`"
    )
    for name in Settings.model_fields:
        assert f"TWEETPULSE_{name.upper()}" in readme


def test_env_example_lists_every_setting():
    assert (REPO / ".env.example").read_text().strip() == env_example().strip()


def test_readme_names_the_two_front_door_commands():
    readme = (REPO / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    makefile = (REPO / "Makefile").read_text()
    assert "\ntest:" in makefile
