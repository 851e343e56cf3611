import json

import pytest

from model_runner.cli import main


@pytest.fixture
def env(monkeypatch, database_url, tiny_bert, tmp_path):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("TWEETPULSE_ENCODER_ID", str(tiny_bert))
    monkeypatch.setenv("TWEETPULSE_HOME", str(tmp_path / "home"))
    from model_runner.settings import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _write(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def test_embed_twice_computes_nothing_the_second_time(env, tmp_path, capsys):
    data = tmp_path / "d"
    data.mkdir()
    labels = ["negative", "neutral", "positive"]
    _write(
        data / "train.jsonl", [{"text": f"tweet number {i} @x", "label": labels[i % 3]} for i in range(30)]
    )
    _write(data / "validation.jsonl", [{"text": f"held out {i}", "label": labels[i % 3]} for i in range(9)])

    assert main(["embed", "--data", str(data)]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (first["texts"], first["computed"], first["cached"], first["new_examples"]) == (39, 39, 0, 39)

    assert main(["embed", "--data", str(data)]) == 0
    captured = capsys.readouterr()
    second = json.loads(captured.out.strip().splitlines()[-1])
    assert (second["computed"], second["cached"], second["new_examples"]) == (0, 39, 0)
    assert "0 computed, 39 from the cache" in captured.err


def test_embed_reports_bad_data_clearly(env, tmp_path, capsys):
    assert main(["embed", "--data", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err
