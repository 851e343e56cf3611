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


def test_label_map_and_columns_from_the_command_line(env, tmp_path, capsys):
    s140 = tmp_path / "s140.csv"
    s140.write_text(
        "polarity,id,tweet\n" + "".join(f"{(0, 2, 4)[i % 3]},{i},tweet number {i}\n" for i in range(30))
    )
    # integers and no map: exit 2 with the values named, before any model work
    assert main(["train", "--data", str(s140), "--text-column", "tweet", "--label-column", "polarity"]) == 2
    assert "integers (0, 2, 4) that no label map names" in capsys.readouterr().err
    assert main(["embed", "--data", str(s140), "--label-map", "0=negative,2=neutral,4=positive"]) == 2
    assert "has no 'text' or 'label' column" in capsys.readouterr().err

    args = [
        "--text-column",
        "tweet",
        "--label-column",
        "polarity",
        "--label-map",
        "0=negative,2=neutral,4=positive",
    ]
    assert main(["embed", "--data", str(s140), *args]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (report["texts"], report["new_examples"]) == (30, 30)
    assert main(["embed", "--task", "sarcasm", "--data", str(s140), *args]) == 2
    assert "unknown task 'sarcasm'; declared tasks: sentiment, emotion" in capsys.readouterr().err
