"""The `sequences` source format: tiny inline files, good and bad, through the same reader `ecomine train` uses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ecomine.data.cleaning import load_events
from ecomine.data.readers import DataError
from ecomine.specs import DataSpec, SourceSpec

GOOD = "1 10 11 12\n2 11 13\n3 10 10 14 15\n"


def _spec(path: Path, **source) -> DataSpec:
    return DataSpec.model_validate({"sources": [{"uri": str(path), **source}]})


def test_lines_become_ordered_events(tmp_path: Path) -> None:
    path = tmp_path / "toys.txt"
    path.write_text(GOOD)
    events, report = load_events(_spec(path))  # .txt: format sequences inferred
    assert report.rows_out == 9
    by_user = {u: g.sort("ts")["item_id"].to_list() for (u,), g in events.group_by("user_id")}
    assert by_user == {"1": ["10", "11", "12"], "2": ["11", "13"], "3": ["10", "10", "14", "15"]}
    assert set(events["event"].to_list()) == {"purchase"}
    # ts keeps the line's order (the repeat of item 10 by user 3 is two events, not a duplicate)
    u3 = events.filter(events["user_id"] == "3").sort("ts")
    assert u3["ts"].is_sorted() and u3["ts"].n_unique() == 4


def test_item_attributes_become_item_text(tmp_path: Path) -> None:
    path, attrs = tmp_path / "seq.data", tmp_path / "attrs.json"
    path.write_text(GOOD)
    attrs.write_text(json.dumps({"10": [1, 2], "11": [3]}))
    events, _ = load_events(_spec(path, format="sequences", item_attributes=str(attrs)))
    text = dict(zip(events["item_id"].to_list(), events["item_text"].to_list()))
    assert text["10"] == "attributes 1 2" and text["11"] == "attributes 3" and text["15"] is None


BAD = {
    "non-integer item": ("1 10 x11\n", "line 1: item id 'x11' is not a whole number"),
    "non-integer user": ("1 10\nu2 11\n", "line 2: user id 'u2' is not a whole number"),
    "empty line": ("1 10 11\n\n2 12\n", "line 2 is empty"),
    "duplicate user": ("1 10 11\n2 12\n1 13\n", "line 3: user '1' already has a sequence on line 1"),
    "user without items": ("1 10\n2\n", "line 2: user '2' has no items"),
    "empty file": ("", "file is empty"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_lines_name_file_line_and_value(tmp_path: Path, case: str) -> None:
    text, expected = BAD[case]
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        load_events(_spec(path))
    assert str(path) in str(err.value) and expected in str(err.value)


def test_bad_attributes_json_is_named(tmp_path: Path) -> None:
    path, attrs = tmp_path / "seq.txt", tmp_path / "attrs.json"
    path.write_text(GOOD)
    attrs.write_text('{"10": 5}')
    with pytest.raises(DataError, match=r"attrs.json: item '10': expected a list of attribute ids"):
        load_events(_spec(path, item_attributes=str(attrs)))


def test_columns_and_attributes_fit_the_format() -> None:
    with pytest.raises(ValueError, match="format sequences has fixed columns"):
        SourceSpec.model_validate({"uri": "x.txt", "columns": {"user_id": "a", "item_id": "b", "ts": "c"}})
    with pytest.raises(ValueError, match="item_attributes applies to format sequences only"):
        SourceSpec.model_validate({"uri": "x.csv", "item_attributes": "a.json",
                                   "columns": {"user_id": "a", "item_id": "b", "ts": "c"}})
    with pytest.raises(ValueError, match=r"columns must map \['user_id', 'item_id', 'ts'\]"):
        SourceSpec.model_validate({"uri": "x.csv"})


def test_cli_bad_line_is_one_line_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("1 10 11\n2 12 oops\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"sources:\n  - uri: {path}\n")
    r = subprocess.run([sys.executable, "-m", "ecomine.cli.main", "data", "profile", str(spec)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert f"{path}: line 2: item id 'oops' is not a whole number" in lines[0]
