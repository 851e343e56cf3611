from __future__ import annotations

from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model_runner.data import DataError, read_source
from model_runner.data.readers import load_raw, split_name


def test_jsonl_file_is_one_train_split(tmp_path: Path, write_jsonl) -> None:
    path = write_jsonl(
        tmp_path / "validation.jsonl", [{"text": "a", "label": "x"}, {"text": "b", "label": 1}]
    )
    splits, malformed = read_source(path)
    assert splits == {"train": [{"text": "a", "label": "x"}, {"text": "b", "label": 1}]}
    assert sum(malformed.values()) == 0


def test_jsonl_broken_lines_are_counted_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    lines = [
        b'{"text": "ok", "label": "pos"}',
        b'{"text": "unterminated',  # invalid JSON
        b"[1, 2]",  # JSON but not an object
        b'"just a string"',
        b"",  # blank lines are ignored, not broken
        b"\xff\xfe garbage",  # not UTF-8
        b'{"label": "pos"}',  # parses fine: missing text is the pipeline's business
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    splits, malformed = read_source(path)
    assert malformed["broken_line"] == 4
    assert splits["train"] == [{"text": "ok", "label": "pos"}, {"text": None, "label": "pos"}]


def test_json_array_file(tmp_path: Path) -> None:
    path = tmp_path / "rows.json"
    path.write_text('[{"text": "a", "label": "x"}, 3, {"text": "b", "label": "y"}]', encoding="utf-8")
    splits, malformed = read_source(path)
    assert [r["text"] for r in splits["train"]] == ["a", "b"]
    assert malformed["broken_line"] == 1


def test_csv_rows_with_wrong_field_count_are_broken(tmp_path: Path, write_csv) -> None:
    path = write_csv(
        tmp_path / "d.csv", [["hi, there", "pos"], ["only one field"], ["a", "b", "c"], ["x", "2"]]
    )
    splits, malformed = read_source(path)
    assert splits["train"] == [{"text": "hi, there", "label": "pos"}, {"text": "x", "label": "2"}]
    assert malformed["broken_line"] == 2


def test_csv_columns_found_by_name_in_any_order(tmp_path: Path, write_csv) -> None:
    path = write_csv(tmp_path / "d.csv", [["1", "pos", "multi\nline text"]], header=("id", "Label", "TEXT"))
    splits, _ = read_source(path)
    assert splits["train"] == [{"text": "multi\nline text", "label": "pos"}]


def test_csv_without_text_column_is_a_data_error(tmp_path: Path, write_csv) -> None:
    path = write_csv(tmp_path / "d.csv", [["hello", "pos"]], header=("tweet", "label"))
    with pytest.raises(DataError, match="'text'"):
        read_source(path)


def test_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"text": ["a", None], "label": [0, 2], "extra": [1, 1]}), path)
    splits, _ = read_source(path)
    assert splits == {"train": [{"text": "a", "label": 0}, {"text": None, "label": 2}]}


def test_corrupt_parquet_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"bad\.parquet"):
        read_source(path)


def test_directory_split_names_from_file_stems(tmp_path: Path, write_jsonl, write_csv) -> None:
    write_jsonl(tmp_path / "train.jsonl", [{"text": "t", "label": "a"}])
    write_csv(tmp_path / "dev.csv", [["d", "b"]])
    write_jsonl(tmp_path / "test.jsonl", [{"text": "s", "label": "a"}])
    (tmp_path / "README.md").write_text("ignored", encoding="utf-8")
    splits, _ = read_source(tmp_path)
    assert splits == {
        "validation": [{"text": "d", "label": "b"}],
        "test": [{"text": "s", "label": "a"}],
        "train": [{"text": "t", "label": "a"}],
    }


@pytest.mark.parametrize(
    ("stem", "expected"),
    [
        ("val", "validation"),
        ("Valid", "validation"),
        ("dev", "validation"),
        ("validation", "validation"),
        ("test", "test"),
        ("train-00000-of-00002", "train"),
        ("extra", "extra"),
    ],
)
def test_split_name_aliases(stem: str, expected: str) -> None:
    assert split_name(stem) == expected


def test_tweeteval_layout_with_mapping(tmp_path: Path) -> None:
    (tmp_path / "train_text.txt").write_text("good day\nbad day\n", encoding="utf-8")
    (tmp_path / "train_labels.txt").write_text("1\n0\n", encoding="utf-8")
    # U+2028 inside a tweet must not split it into two lines.
    (tmp_path / "val_text.txt").write_text("meh \u2028 day\n", encoding="utf-8")
    (tmp_path / "val_labels.txt").write_text("2\n", encoding="utf-8")
    (tmp_path / "mapping.txt").write_text("0\tnegative\n1\tpositive\n2\tneutral\n", encoding="utf-8")
    raw = load_raw(tmp_path)
    assert raw.splits["train"] == [{"text": "good day", "label": "1"}, {"text": "bad day", "label": "0"}]
    assert raw.splits["validation"] == [{"text": "meh \u2028 day", "label": "2"}]
    assert raw.label_mapping == {"0": "negative", "1": "positive", "2": "neutral"}


def test_tweeteval_misaligned_files_pad_with_missing(tmp_path: Path) -> None:
    (tmp_path / "train_text.txt").write_text("a\nb\nc\n", encoding="utf-8")
    (tmp_path / "train_labels.txt").write_text("0\n", encoding="utf-8")
    splits, _ = read_source(tmp_path)
    assert [r["label"] for r in splits["train"]] == ["0", None, None]


def test_hub_id_uses_load_dataset_and_classlabel_names(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    features = datasets.Features(
        text=datasets.Value("string"), label=datasets.ClassLabel(names=["neg", "pos"])
    )

    def fake_load_dataset(name: str, config: str | None = None, **kwargs):
        calls.append((name, config))
        return datasets.DatasetDict(
            {
                "train": datasets.Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]}, features=features),
                "validation": datasets.Dataset.from_dict({"text": ["c"], "label": [1]}, features=features),
            }
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    raw = load_raw("someone/tweets:sentiment")
    assert calls == [("someone/tweets", "sentiment")]
    assert raw.splits["validation"] == [{"text": "c", "label": 1}]
    assert raw.label_mapping == {"0": "neg", "1": "pos"}


def test_hub_failure_is_a_data_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(*args, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", failing)
    with pytest.raises(DataError, match="owner/missing"):
        read_source("owner/missing")


@pytest.mark.parametrize("source", ["no/such/file.jsonl", "/definitely/not/here", "plainword"])
def test_missing_path_is_a_data_error_without_hub_call(source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("must not reach the Hub"))
    with pytest.raises(DataError, match="not found"):
        read_source(source)


def test_unsupported_format_and_empty_directory(tmp_path: Path) -> None:
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"x")
    with pytest.raises(DataError, match="unsupported"):
        read_source(path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no data files"):
        read_source(empty)
