"""Readers and cleaning on hand-made files with known answers."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from ecomine.data.cleaning import load_events
from ecomine.data.readers import DataError
from ecomine.data.schema import EVENT_COLUMNS, validate_events
from ecomine.specs import DataSpec

CSV = """inv,code,desc,qty,when,unit,cust,country
100,A1,RED MUG,2,2024-01-02 10:00:00,2.5,7,UK
100,A2,BLUE MUG,1,2024-01-02 10:00:00,3.0,7,UK
100,A2,BLUE MUG,1,2024-01-02 10:00:00,3.0,7,UK
101,A1,RED MUG,5,2024-01-05 11:00:00,2.5,8,FR
C102,A1,RED MUG,-2,2024-01-09 09:00:00,2.5,7,UK
103,POST,POSTAGE,1,2024-01-10 09:00:00,18.0,7,UK
104,A3,FREEBIE,1,2024-01-10 09:00:00,0.0,7,UK
105,A3,GREEN MUG,1,2024-01-11 09:00:00,1.0,,UK
106,A3,GREEN MUG,50000,2024-01-12 09:00:00,1.0,9,UK
A107,B,ADJUST BAD DEBT,1,2024-01-12 09:00:00,100.0,9,UK
C108,A2,BLUE MUG,-1,2024-01-13 09:00:00,3.0,8,FR
"""


def _spec(uri: str, **over) -> DataSpec:
    raw = {
        "sources": [
            {
                "uri": uri,
                "columns": {
                    "user_id": "cust", "item_id": "code", "ts": "when", "quantity": "qty",
                    "price": "unit", "order_id": "inv", "item_text": "desc",
                },
                "keep": {"country": "country"},
                "ts_format": "%Y-%m-%d %H:%M:%S",
            }
        ],
        "event_rules": [
            {"when": {"column": "order_id", "starts_with": "C"}, "event": "return"},
            {"when": {"column": "order_id", "starts_with": "A"}, "drop": "adjustment"},
        ],
    }
    raw.update(over)
    return DataSpec.model_validate(raw)


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    p = tmp_path / "events.csv"
    p.write_text(CSV)
    return p


def test_clean_counts_every_row_by_reason(csv_file: Path) -> None:
    events, report = load_events(_spec(str(csv_file)))
    validate_events(events)
    assert report.rows_read == 11
    assert report.dropped == {
        "rule:adjustment": 1,
        "missing_user": 1,
        "non_product": 1,
        "non_positive_price": 1,
        "quantity_outlier": 1,
        "duplicate": 1,
    }
    assert report.rows_out == 11 - sum(report.dropped.values()) == 5
    assert report.events == {"purchase": 3, "return": 2}
    assert report.changed["return_quantity_made_positive"] == 2


def test_return_is_linked_to_the_purchase_it_cancels(csv_file: Path) -> None:
    events, report = load_events(_spec(str(csv_file)))
    returns = events.filter(pl.col("event") == "return").sort("ts")
    # user 7 returned A1 bought in order 100; user 8 returned A2 never bought by 8 -> unlinked
    assert returns.select("user_id", "item_id", "quantity", "linked_order_id").rows() == [
        ("7", "A1", 2, "100"),
        ("8", "A2", 1, None),
    ]
    assert report.changed["return_linked_to_purchase"] == 1
    assert report.changed["return_without_purchase_in_log"] == 1


def test_canonical_types(csv_file: Path) -> None:
    events, _ = load_events(_spec(str(csv_file)))
    assert list(events.columns[: len(EVENT_COLUMNS)]) == list(EVENT_COLUMNS)
    assert events.schema["country"] == pl.String
    assert events["user_id"].to_list().count("7") == 3
    assert str(events["ts"].dtype) == "Datetime(time_unit='us', time_zone='UTC')"


def test_overlap_between_sources_keeps_first_copy(tmp_path: Path) -> None:
    a = tmp_path / "a.csv"
    b = tmp_path / "b.csv"
    lines = CSV.splitlines()
    a.write_text("\n".join(lines[:5]) + "\n")  # orders 100, 101
    b.write_text("\n".join([lines[0], lines[4], lines[5]]) + "\n")  # order 101 again + C102
    spec = _spec(str(a))
    spec = spec.model_copy(update={"sources": [spec.sources[0], spec.sources[0].model_copy(update={"uri": str(b)})], "dedupe_overlap_on": "order_id"})
    events, report = load_events(spec)
    assert report.rows_read == 6
    assert report.dropped["overlap"] == 1
    assert report.rows_after_overlap == 5


def test_parquet_and_jsonl_sources(tmp_path: Path, csv_file: Path) -> None:
    df = pl.read_csv(csv_file, infer_schema=False)
    pq = tmp_path / "e.parquet"
    df.write_parquet(pq)
    js = tmp_path / "e.jsonl"
    df.write_ndjson(js)
    a, _ = load_events(_spec(str(pq)))
    b, _ = load_events(_spec(str(js)))
    c, _ = load_events(_spec(f"file://{csv_file}"))
    assert a.equals(b) and a.equals(c)


def test_filters_and_event_column(tmp_path: Path) -> None:
    p = tmp_path / "e.csv"
    p.write_text("u,i,t,kind\n1,x,2024-01-01T00:00:00,buy\n1,y,2024-01-02T00:00:00,look\n2,x,2024-01-03T00:00:00,buy\n")
    spec = DataSpec.model_validate({
        "sources": [{"uri": str(p), "columns": {"user_id": "u", "item_id": "i", "ts": "t", "event": "kind"},
                     "event_values": {"buy": "purchase", "look": "view"}}],
        "filters": [{"column": "user_id", "equals": "1"}],
        "cleaning": {"drop_non_positive_price": False, "drop_non_positive_quantity": False},
    })
    events, report = load_events(spec)
    assert events["event"].to_list() == ["purchase", "view"]
    assert report.dropped == {"filter": 1}


BAD_CASES = {
    "missing_file": (None, "file not found"),
    "empty_file": ("", "file is empty"),
    "missing_column": (CSV.replace("unit", "cost"), "column 'unit' (mapped to price) not found"),
    "bad_timestamp": (CSV.replace("2024-01-05 11:00:00", "5th of Jan"), "unparseable timestamp '5th of Jan'"),
    "wrong_type": (CSV.replace(",5,2024", ",five,2024"), "got 'five'"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_names_file_column_value(tmp_path: Path, case: str) -> None:
    text, expected = BAD_CASES[case]
    p = tmp_path / "events.csv"
    if text is not None:
        p.write_text(text)
    with pytest.raises(DataError) as exc:
        load_events(_spec(str(p)))
    assert expected in str(exc.value)
    assert str(p) in str(exc.value)


def test_unknown_event_value(tmp_path: Path) -> None:
    p = tmp_path / "e.csv"
    p.write_text("u,i,t,kind\n1,x,2024-01-01T00:00:00,buy\n1,y,2024-01-02T00:00:00,teleport\n")
    spec = DataSpec.model_validate({
        "sources": [{"uri": str(p), "columns": {"user_id": "u", "item_id": "i", "ts": "t", "event": "kind"},
                     "event_values": {"buy": "purchase"}}],
    })
    with pytest.raises(DataError, match=r"unknown event value\(s\) \['teleport'\]"):
        load_events(spec)


def test_corrupt_parquet(tmp_path: Path) -> None:
    p = tmp_path / "e.parquet"
    p.write_bytes(b"PAR1 this is not parquet at all")
    with pytest.raises(DataError, match="not a valid parquet file"):
        load_events(_spec(str(p)))
