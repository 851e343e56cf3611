from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model_runner.data import DataError, DataSummary, PreparedData, prepare_dataset

SENTIMENT = ["negative", "neutral", "positive"]


def _texts(ds: datasets.Dataset) -> list[str]:
    return list(ds["text"])


def _named(ds: datasets.Dataset) -> list[tuple[str, str]]:
    names = ds.features["label"].names
    return [(t, names[i]) for t, i in zip(ds["text"], ds["label"], strict=True)]


def _assert_accounting(summary: DataSummary) -> None:
    assert summary.rows_in == sum(summary.rows_out.values()) + sum(summary.dropped.values())


def test_jsonl_file_gets_a_stratified_eval_split(tmp_path: Path, write_jsonl, make_rows) -> None:
    path = write_jsonl(tmp_path / "all.jsonl", make_rows(SENTIMENT, 20))
    data = prepare_dataset(path, eval_fraction=0.25)
    assert isinstance(data, PreparedData)
    assert data.labels == SENTIMENT
    assert data.train.features["label"] == datasets.ClassLabel(names=SENTIMENT)
    assert data.eval.features == data.train.features
    assert (len(data.train), len(data.eval)) == (45, 15)
    assert data.summary.class_balance["eval"] == {"negative": 5, "neutral": 5, "positive": 5}
    assert data.summary.eval_source == "stratified_split"
    assert not set(_texts(data.train)) & set(_texts(data.eval))
    _assert_accounting(data.summary)


def test_directory_with_validation_uses_it_as_eval(tmp_path: Path, write_jsonl, make_rows) -> None:
    write_jsonl(tmp_path / "train.jsonl", make_rows(SENTIMENT, 5))
    write_jsonl(tmp_path / "validation.jsonl", make_rows(SENTIMENT, 2, prefix="held out"))
    write_jsonl(tmp_path / "test.jsonl", make_rows(SENTIMENT, 3, prefix="test"))
    data = prepare_dataset(tmp_path)
    assert data.summary.eval_source == "file:validation"
    assert data.summary.rows_out == {"train": 15, "eval": 6, "unused": 9}
    assert all(t.startswith("held out") for t in _texts(data.eval))
    assert not any(t.startswith("test") for t in _texts(data.train))
    _assert_accounting(data.summary)


def test_test_split_is_eval_when_there_is_no_validation(tmp_path: Path, write_jsonl, make_rows) -> None:
    write_jsonl(tmp_path / "train.jsonl", make_rows(SENTIMENT, 4))
    write_jsonl(tmp_path / "test.jsonl", make_rows(SENTIMENT, 1, prefix="test"))
    data = prepare_dataset(tmp_path)
    assert data.summary.eval_source == "file:test"
    assert len(data.eval) == 3


def test_csv_and_parquet_give_the_same_data_and_hash(
    tmp_path: Path, write_jsonl, write_csv, make_rows
) -> None:
    rows = make_rows(["a", "b"], 6)
    jsonl = write_jsonl(tmp_path / "d.jsonl", rows)
    csv_path = write_csv(tmp_path / "d.csv", [[r["text"], r["label"]] for r in rows])
    parquet = tmp_path / "d.parquet"
    pq.write_table(
        pa.table({"text": [r["text"] for r in rows], "label": [r["label"] for r in rows]}), parquet
    )
    results = [prepare_dataset(p) for p in (jsonl, csv_path, parquet)]
    assert {r.summary.dataset_hash for r in results} == {results[0].summary.dataset_hash}
    assert all(_named(r.eval) == _named(results[0].eval) for r in results)
    assert results[2].summary.rows_out == {"train": 9, "eval": 3}


@pytest.mark.parametrize("with_mapping", [True, False])
def test_tweeteval_layout(tmp_path: Path, with_mapping: bool) -> None:
    for split, n in (("train", 6), ("val", 3)):
        texts = [f"{split} tweet {i} @someone" for i in range(n)]
        (tmp_path / f"{split}_text.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
        (tmp_path / f"{split}_labels.txt").write_text("\n".join(str(i % 3) for i in range(n)) + "\n", "utf-8")
    if with_mapping:
        (tmp_path / "mapping.txt").write_text("0\tnegative\n1\tneutral\n2\tpositive\n", encoding="utf-8")
        data = prepare_dataset(tmp_path)
    else:
        data = prepare_dataset(tmp_path, label_map={"0": "Negative", "1": "Neutral", "2": "Positive"})
    assert data.labels == SENTIMENT
    assert data.summary.eval_source == "file:validation"
    assert _named(data.eval) == [
        ("val tweet 0 @user", "negative"),
        ("val tweet 1 @user", "neutral"),
        ("val tweet 2 @user", "positive"),
    ]


def test_integer_labels_without_a_map_are_an_error_naming_the_values(tmp_path: Path) -> None:
    (tmp_path / "train_text.txt").write_text("a\nb\nc\n", encoding="utf-8")
    (tmp_path / "train_labels.txt").write_text("0\n1\n1\n", encoding="utf-8")
    # even with the task's class names: 0/1 must never be read as negative/neutral by position
    with pytest.raises(DataError, match=r"integers \(0, 1\) that no label map names.*0=NAME,1=NAME"):
        prepare_dataset(tmp_path, label_names=["negative", "neutral", "positive"])


def test_hub_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    features = datasets.Features(
        text=datasets.Value("string"),
        label=datasets.ClassLabel(names=["anger", "joy", "optimism", "sadness"]),
    )
    train = {"text": [f"t{i}" for i in range(8)], "label": [i % 4 for i in range(8)]}
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(train, features=features),
            "validation": datasets.Dataset.from_dict(
                {"text": ["v0", "v1"], "label": [3, 1]}, features=features
            ),
            "test": datasets.Dataset.from_dict({"text": ["s0"], "label": [0]}, features=features),
        }
    )
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None, **kw: dd)
    data = prepare_dataset("org/emotions:emotion")
    assert data.labels == ["anger", "joy", "optimism", "sadness"]
    assert _named(data.eval) == [("v0", "sadness"), ("v1", "joy")]
    assert data.summary.rows_out == {"train": 8, "eval": 2, "unused": 1}
    assert data.summary.source == "org/emotions:emotion"


def test_every_drop_reason_is_counted_exactly(tmp_path: Path, write_jsonl, make_rows) -> None:
    rows = [
        *make_rows(["neg", "pos"], 4),
        "{not json",  # broken_line
        "[]",  # broken_line
        {"label": "pos"},  # missing_text
        {"text": None, "label": "pos"},  # missing_text
        {"text": 42, "label": "pos"},  # non_string_text
        {"text": ["a"], "label": "neg"},  # non_string_text
        {"text": "  \n ", "label": "pos"},  # empty_text
        {"text": "no label"},  # missing_label
        {"text": "null label", "label": None},  # missing_label
        {"text": "empty label", "label": ""},  # missing_label
        {"text": "odd label", "label": "sarcastic"},  # unknown_label
        {"text": "int label", "label": 7},  # unknown_label
        {"text": "tweet neg number 0", "label": "neg"},  # duplicate
        {"text": "tweet  neg number 0 ", "label": "neg"},  # duplicate after whitespace cleaning
        {"text": "tweet pos number 1", "label": "neg"},  # conflicting_label (minority: 1 of 2 -> tie)
    ]
    write_jsonl(tmp_path / "train.jsonl", rows)
    write_jsonl(tmp_path / "validation.jsonl", make_rows(["neg", "pos"], 1, prefix="eval"))
    summary = prepare_dataset(tmp_path, label_names=["neg", "pos"]).summary
    assert summary.dropped == {
        "broken_line": 2,
        "missing_text": 2,
        "non_string_text": 2,
        "empty_text": 1,
        "missing_label": 3,
        "unknown_label": 2,
        "duplicate": 2,
        "conflicting_label": 2,
    }
    assert summary.rows_in == len(rows) + 2
    assert summary.rows_out == {"train": 7, "eval": 2}
    _assert_accounting(summary)


def test_conflicting_labels_majority_wins_and_tie_drops(tmp_path: Path, write_jsonl, make_rows) -> None:
    rows = [
        *make_rows(["neg", "pos"], 3),
        {"text": "majority text", "label": "pos"},
        {"text": "majority text", "label": "neg"},
        {"text": "majority  text", "label": "pos"},
        {"text": "tie text", "label": "pos"},
        {"text": "tie text", "label": "neg"},
    ]
    write_jsonl(tmp_path / "train.jsonl", rows)
    write_jsonl(tmp_path / "validation.jsonl", make_rows(["neg", "pos"], 1, prefix="eval"))
    data = prepare_dataset(tmp_path)
    train = dict(_named(data.train))
    assert train["majority text"] == "pos"
    assert "tie text" not in train
    assert data.summary.conflicts == 2
    assert data.summary.dropped["conflicting_label"] == 3  # 1 minority row + both tie rows
    assert data.summary.dropped["duplicate"] == 1  # the second "pos" copy of the majority text
    assert data.summary.conflict_examples == [
        {"text": "majority text", "labels": {"pos": 2, "neg": 1}},
        {"text": "tie text", "labels": {"pos": 1, "neg": 1}},
    ]


def test_no_strict_majority_with_three_labels_drops_all(tmp_path: Path, write_jsonl, make_rows) -> None:
    rows = [*make_rows(SENTIMENT, 3)] + [
        {"text": "x", "label": lab} for lab in ("negative", "negative", "neutral", "positive")
    ]
    data = prepare_dataset(write_jsonl(tmp_path / "d.jsonl", rows), eval_fraction=0.34)
    assert "x" not in _texts(data.train) + _texts(data.eval)
    assert data.summary.dropped["conflicting_label"] == 4


def test_eval_texts_are_removed_from_train(tmp_path: Path, write_jsonl, make_rows) -> None:
    write_jsonl(tmp_path / "train.jsonl", [*make_rows(["a", "b"], 3), {"text": "shared @bob", "label": "a"}])
    write_jsonl(
        tmp_path / "dev.jsonl",
        [*make_rows(["a", "b"], 1, prefix="eval"), {"text": "shared @al", "label": "a"}],
    )
    data = prepare_dataset(tmp_path)
    assert "shared @user" in _texts(data.eval)
    assert "shared @user" not in _texts(data.train)
    assert data.summary.dropped["duplicate"] == 1


def test_label_map_for_sentiment140_codes(tmp_path: Path, write_csv) -> None:
    rows = [[f"tweet {i}", str(code)] for i, code in enumerate([0, 2, 4] * 4)] + [["odd", "1"]]
    data = prepare_dataset(
        write_csv(tmp_path / "s140.csv", rows), label_map={"0": "negative", "2": "neutral", "4": "positive"}
    )
    assert data.labels == SENTIMENT
    assert data.summary.dropped["unknown_label"] == 1
    assert sum(data.summary.class_balance["train"].values()) + len(data.eval) == 12


def test_binary_integer_labels_with_a_map_train_two_classes(tmp_path: Path, write_jsonl) -> None:
    rows = [{"text": f"t{i}", "label": i % 2} for i in range(20)]
    data = prepare_dataset(
        write_jsonl(tmp_path / "d.jsonl", rows),
        label_names=["negative", "neutral", "positive"],
        label_map={"0": "negative", "1": "positive"},
    )
    assert data.labels == ["negative", "positive"]
    assert data.summary.dropped["unknown_label"] == 0


def test_named_columns_are_read_from_jsonl_csv_and_parquet(tmp_path: Path, write_jsonl) -> None:
    rows = [{"tweet": f"tweet {i}", "polarity": code, "text": None} for i, code in enumerate([0, 4] * 6)]
    path = write_jsonl(tmp_path / "s140.jsonl", rows)
    data = prepare_dataset(
        path, label_map={"0": "negative", "4": "positive"}, text_column="tweet", label_column="polarity"
    )
    assert data.labels == ["negative", "positive"]
    assert len(data.train) + len(data.eval) == 12
    csv_path = tmp_path / "s140.csv"
    csv_path.write_text("Polarity,Tweet\n" + "".join(f"{r['polarity']},{r['tweet']}\n" for r in rows))
    from_csv = prepare_dataset(
        csv_path, label_map={"0": "negative", "4": "positive"}, text_column="tweet", label_column="polarity"
    )
    assert from_csv.summary.dataset_hash == data.summary.dataset_hash
    with pytest.raises(DataError, match="has no 'label' column in its header"):
        prepare_dataset(csv_path, text_column="tweet")
    with pytest.raises(DataError, match="has a 'body' text field"):
        prepare_dataset(path, text_column="body", label_column="polarity")


def test_integer_labels_with_label_names_keep_given_order(tmp_path: Path, write_jsonl) -> None:
    rows = [{"text": f"t{i}", "label": i % 2 + 1} for i in range(10)]  # only classes 1 and 2 present
    data = prepare_dataset(
        write_jsonl(tmp_path / "d.jsonl", rows),
        label_names=["zeta", "beta", "alpha"],
        label_map={"1": "beta", "2": "alpha"},
    )
    assert data.labels == ["beta", "alpha"]
    assert set(data.summary.class_balance["train"]) == {"beta", "alpha"}


def test_four_class_dataset(tmp_path: Path, write_jsonl, make_rows) -> None:
    emotions = ["sadness", "anger", "optimism", "joy"]
    data = prepare_dataset(write_jsonl(tmp_path / "e.jsonl", make_rows(emotions, 10)), eval_fraction=0.2)
    assert data.labels == sorted(emotions)
    assert data.train.features["label"].num_classes == 4
    assert data.summary.class_balance["eval"] == dict.fromkeys(sorted(emotions), 2)


def test_stratified_split_is_deterministic_and_keeps_ratios(tmp_path: Path, write_jsonl) -> None:
    rows = [{"text": f"t{i}", "label": "big" if i % 5 else "small"} for i in range(200)]  # 160 big / 40 small
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    first, second = prepare_dataset(path, seed=3), prepare_dataset(path, seed=3)
    other = prepare_dataset(path, seed=4)
    assert _named(first.eval) == _named(second.eval)
    assert _texts(first.eval) != _texts(other.eval)
    assert first.summary.class_balance["eval"] == {"big": 32, "small": 8}
    assert first.summary.class_balance["train"] == {"big": 128, "small": 32}
    assert not set(_texts(first.train)) & set(_texts(first.eval))


def test_hash_ignores_row_order_and_format_but_sees_label_changes(
    tmp_path: Path, write_jsonl, write_csv, make_rows
) -> None:
    rows = make_rows(["a", "b", "c"], 8)
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    base = prepare_dataset(write_jsonl(tmp_path / "one.jsonl", rows))
    reordered = prepare_dataset(write_csv(tmp_path / "two.csv", [[r["text"], r["label"]] for r in shuffled]))
    assert reordered.summary.dataset_hash == base.summary.dataset_hash
    assert _named(reordered.eval) == _named(base.eval)  # same split regardless of input order

    changed = [dict(r) for r in rows]
    changed[0]["label"] = "b" if changed[0]["label"] != "b" else "c"
    flipped = prepare_dataset(write_jsonl(tmp_path / "three.jsonl", changed))
    assert flipped.summary.dataset_hash != base.summary.dataset_hash
    assert len(base.summary.dataset_hash) == 64


def test_sample_fraction_samples_train_only(tmp_path: Path, write_jsonl, make_rows) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", make_rows(["a", "b"], 50))
    full = prepare_dataset(path)
    sampled = prepare_dataset(path, sample_fraction=0.5)
    assert _named(sampled.eval) == _named(full.eval)
    assert len(sampled.train) == 40
    assert sampled.summary.class_balance["train"] == {"a": 20, "b": 20}
    assert set(_texts(sampled.train)) <= set(_texts(full.train))
    assert _named(prepare_dataset(path, sample_fraction=0.5).train) == _named(sampled.train)
    assert sampled.summary.rows_out["sampled_out"] == 40
    _assert_accounting(sampled.summary)
    assert len(prepare_dataset(path, sample_fraction=1.0).train) == len(full.train)


def test_extra_rows_join_train_and_are_cleaned(tmp_path: Path, write_jsonl, make_rows) -> None:
    write_jsonl(tmp_path / "train.jsonl", make_rows(["a", "b"], 3))
    write_jsonl(tmp_path / "validation.jsonl", make_rows(["a", "b"], 1, prefix="eval"))
    extra = [
        {"text": "fresh from the db @carol https://x.y", "label": "b"},
        {"text": "tweet a number 0", "label": "a"},  # already in the file: duplicate
        {"text": "eval a number 0", "label": "a"},  # in eval: must not enter train
        "not a mapping",
    ]
    data = prepare_dataset(tmp_path, extra_rows=extra)
    assert "fresh from the db @user http" in _texts(data.train)
    assert len(data.train) == 7
    assert data.summary.dropped["duplicate"] == 2
    assert data.summary.dropped["broken_line"] == 1
    _assert_accounting(data.summary)


def test_summary_to_dict_is_json_serialisable(tmp_path: Path, write_jsonl, make_rows) -> None:
    summary = prepare_dataset(write_jsonl(tmp_path / "d.jsonl", make_rows(["a", "b"], 5))).summary
    as_dict = json.loads(json.dumps(summary.to_dict()))
    assert as_dict["labels"] == ["a", "b"]
    assert as_dict["rows_in"] == 10
    assert set(as_dict) >= {"source", "dropped", "class_balance", "dataset_hash", "eval_source", "conflicts"}


@pytest.mark.parametrize(
    ("rows", "kwargs", "message"),
    [
        ([], {}, "no valid rows"),
        ([{"text": "", "label": "a"}], {}, "no valid rows"),
        ([{"text": f"t{i}", "label": "a"} for i in range(5)], {}, "fewer than 2 classes"),
        (
            [*({"text": f"t{i}", "label": "a"} for i in range(5)), {"text": "lonely", "label": "b"}],
            {},
            "'b': 1",
        ),
        (
            [{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(4)],
            {"eval_fraction": 0.0},
            "eval_fraction",
        ),
        (
            [{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(4)],
            {"sample_fraction": 1.5},
            "sample_fraction",
        ),
        ([{"text": f"t{i}", "label": "abc"[i % 3]} for i in range(6)], {"eval_fraction": 0.1}, "stratified"),
    ],
)
def test_data_errors(tmp_path: Path, write_jsonl, rows: list, kwargs: dict, message: str) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(DataError, match=message):
        prepare_dataset(path, **kwargs)


def test_data_error_is_a_value_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(ValueError, match=r"nope\.jsonl"):
        prepare_dataset(missing)


def test_only_an_eval_split_is_an_error(tmp_path: Path, write_jsonl, make_rows) -> None:
    write_jsonl(tmp_path / "validation.jsonl", make_rows(["a", "b"], 3))
    with pytest.raises(DataError, match="no usable training rows"):
        prepare_dataset(tmp_path)


def test_class_balance_covers_all_labels(tmp_path: Path, write_jsonl, make_rows) -> None:
    rows = make_rows(["a", "b", "c"], 10)
    data = prepare_dataset(write_jsonl(tmp_path / "d.jsonl", rows))
    totals = Counter(data.summary.class_balance["train"]) + Counter(data.summary.class_balance["eval"])
    assert totals == {"a": 10, "b": 10, "c": 10}
