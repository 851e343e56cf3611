from __future__ import annotations

from pathlib import Path

import pytest

from model_runner.data.labels import LabelResolver, parse_mapping_file


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("positive", ("positive", None)),
        ("  Negative ", ("negative", None)),
        (None, (None, "missing_label")),
        ("", (None, "missing_label")),
        ("   ", (None, "missing_label")),
        (float("nan"), (None, "missing_label")),
        (1, (None, "unknown_label")),  # integer without any mapping
        ("2", (None, "unknown_label")),  # digit string is an integer label too
        (True, (None, "unknown_label")),
        ([1], (None, "unknown_label")),
        (2.5, (None, "unknown_label")),
    ],
)
def test_resolver_without_configuration(raw: object, expected: tuple) -> None:
    assert LabelResolver().resolve(raw) == expected


def test_label_map_maps_sentiment140_codes() -> None:
    resolver = LabelResolver(label_map={"0": "negative", "2": "neutral", "4": "positive"})
    assert [resolver.resolve(v)[0] for v in (0, "2", 4, 4.0)] == [
        "negative",
        "neutral",
        "positive",
        "positive",
    ]
    assert resolver.resolve(1) == (None, "unknown_label")
    # Names not in the map pass through unchanged.
    assert resolver.resolve("neutral") == ("neutral", None)


def test_label_map_renames_string_labels_case_insensitively() -> None:
    resolver = LabelResolver(label_map={"POS": "Positive", "neg": "negative"})
    assert resolver.resolve("pos") == ("positive", None)
    assert resolver.resolve(" NEG ") == ("negative", None)


def test_precedence_label_map_then_source_mapping_and_never_the_position() -> None:
    resolver = LabelResolver(
        label_names=["a", "b", "c", "d"],
        label_map={"0": "d"},
        source_mapping={"0": "a", "1": "b"},
    )
    assert resolver.resolve(0) == ("d", None)  # label_map wins
    assert resolver.resolve("1") == ("b", None)  # then the source's mapping
    # label_names is a whitelist and an order, never a guess: integer 2 is not "c"
    assert resolver.resolve(2) == (None, "unknown_label")
    assert resolver.resolve(7) == (None, "unknown_label")
    assert resolver.resolve(-1) == (None, "unknown_label")
    assert dict(resolver.unnamed_integers) == {2: 1, 7: 1, -1: 1}


def test_label_names_is_a_whitelist_and_fixes_the_order() -> None:
    resolver = LabelResolver(label_names=["Sadness", "joy", "anger"])
    assert resolver.resolve("JOY") == ("joy", None)
    assert resolver.resolve("optimism") == (None, "unknown_label")
    assert resolver.order({"anger", "sadness"}) == ["sadness", "anger"]
    assert LabelResolver().order({"b", "c", "a"}) == ["a", "b", "c"]


def test_mapping_outside_label_names_is_unknown() -> None:
    resolver = LabelResolver(label_names=["negative", "positive"], source_mapping={"1": "neutral"})
    assert resolver.resolve(1) == (None, "unknown_label")


def test_parse_mapping_file_accepts_tabs_and_spaces(tmp_path: Path) -> None:
    path = tmp_path / "mapping.txt"
    path.write_text("0\tNegative\n1 neutral\n\n2\tpositive\tdescription\nnot a line\n", encoding="utf-8")
    assert parse_mapping_file(path) == {"0": "negative", "1": "neutral", "2": "positive"}
