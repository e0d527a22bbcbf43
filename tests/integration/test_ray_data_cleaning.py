"""The Ray Data cleaning path (`data.distributed.load_events_ray`) gives exactly the rows and
the report of the in-process path (`data.cleaning.load_events`): on a hand-made pair of CSV
files that holds every case cleaning handles (local and on the loopback S3), and on both
Online Retail files (there also every feature table `data build` writes)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ecomine.data.build import build_features
from ecomine.data.cleaning import CleaningReport, load_events
from ecomine.data.distributed import load_events_ray
from ecomine.data.readers import DataError
from ecomine.datasets import resolve_data_spec_path
from ecomine.specs import DataSpec, load_spec

pytestmark = pytest.mark.integration

# Older file: comma separated. Lines, in order: a purchase and its exact duplicate; a
# cancellation to link to order 100; two returns that are equal once the sign is made
# positive (the first, unflipped one must be the one kept: file order decides); guest
# (no customer) lines, one a duplicate and one a return; postage; order 106, which the
# newer file repeats; a zero quantity.
OLD = """InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
100,I1,Item one,3,2021-01-01 10:00:00,2.5,u1,UK
100,I1,Item one,3,2021-01-01 10:00:00,2.5,u1,UK
100,I2,Item two,1,2021-01-01 10:00:00,4.0,u1,UK
C101,I1,Item one,-2,2021-01-03 09:00:00,2.5,u1,UK
C102,I1,Item one,2,2021-01-04 09:00:00,2.5,u1,UK
C102,I1,Item one,-2,2021-01-04 09:00:00,2.5,u1,UK
103,I3,Item three,5,2021-01-02 12:00:00,1.0,,UK
103,I3,Item three,5,2021-01-02 12:00:00,1.0,,UK
C104,I3,Item three,-1,2021-01-05 12:00:00,1.0,,UK
105,POST,Postage,1,2021-01-02 12:00:00,10.0,u2,FR
106,I4,Item four,2,2021-01-06 08:00:00,3.0,u2,FR
107,I4,Item four,0,2021-01-06 08:00:00,3.0,u2,FR
"""
# Newer file: other column names, semicolons. Order 106 again (overlap); a purchase and
# its cancellation; a missing price; a bad-debt adjustment; a return with no purchase.
NEW = """Invoice;StockCode;Description;Quantity;InvoiceDate;Price;Customer ID;Country
106;I4;Item four;2;2021-01-06 08:00:00;3.0;u2;FR
200;I1;Item one;1;2021-01-07 10:00:00;2.5;u1;UK
C201;I1;Item one;-1;2021-01-08 10:00:00;2.5;u1;UK
202;I5;Item five;1;2021-01-07 10:00:00;;u3;DE
A203;I5;adjustment;1;2021-01-07 10:00:00;1.0;u3;DE
204;I5;Item five;2;2021-01-07 11:00:00;5.0;u3;DE
C205;I6;Item six;-1;2021-01-09 11:00:00;5.0;u3;DE
"""


def _spec(old: Path, new: Path, *, drop_missing_user: bool) -> DataSpec:
    common = {"ts_format": "%Y-%m-%d %H:%M:%S", "keep": {"country": "Country"}}
    return DataSpec.model_validate({
        "name": "handmade",
        "sources": [
            {"uri": str(old), "columns": {"user_id": "CustomerID", "item_id": "StockCode", "ts": "InvoiceDate",
             "quantity": "Quantity", "price": "UnitPrice", "order_id": "InvoiceNo", "item_text": "Description"},
             **common},
            {"uri": str(new), "csv_separator": ";", "columns": {"user_id": "Customer ID", "item_id": "StockCode",
             "ts": "InvoiceDate", "quantity": "Quantity", "price": "Price", "order_id": "Invoice",
             "item_text": "Description"}, **common},
        ],
        "event_rules": [
            {"when": {"column": "order_id", "starts_with": "C"}, "event": "return"},
            {"when": {"column": "order_id", "starts_with": "A"}, "drop": "bad_debt_adjustment"},
        ],
        "dedupe_overlap_on": "order_id",
        "cleaning": {"drop_missing_user": drop_missing_user},
    })


def assert_same(expected: tuple[pl.DataFrame, CleaningReport], got: tuple[pl.DataFrame, CleaningReport]) -> None:
    (events, report), (events_ray, report_ray) = expected, got
    assert events_ray.columns == events.columns
    by = events.columns
    assert_frame_equal(events_ray.sort(by, nulls_last=True), events.sort(by, nulls_last=True))
    assert report_ray.model_dump(exclude={"seconds"}) == report.model_dump(exclude={"seconds"})


def assert_same_features(expected: dict[str, pl.DataFrame], got: dict[str, pl.DataFrame]) -> None:
    """Row for row, order included; floats to 1e-9 (polars' multi-threaded sums round differently
    from one run to the next even on one engine)."""
    assert list(got) == list(expected)
    for name, table in expected.items():
        assert table.height > 0, name
        assert_frame_equal(got[name], table, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)


@pytest.mark.parametrize("drop_missing_user", [True, False], ids=["guests-dropped", "guests-kept"])
def test_handmade_csv_same_as_in_process(ray_session, tmp_path: Path, drop_missing_user: bool) -> None:
    (tmp_path / "old.csv").write_text(OLD)
    (tmp_path / "new.csv").write_text(NEW)
    spec = _spec(tmp_path / "old.csv", tmp_path / "new.csv", drop_missing_user=drop_missing_user)
    expected = load_events(spec)
    # Two buckets for three users (and the guests): groups hold several users.
    got = load_events_ray(spec, user_buckets=2)
    assert_same(expected, got)

    # The cases are really there (an equality of two empty results would prove nothing).
    events, report = got
    assert report.dropped["overlap"] == 1 and report.dropped["rule:bad_debt_adjustment"] == 1
    assert report.dropped["duplicate"] == (2 if drop_missing_user else 3)  # guests: 103 twice
    assert report.changed["return_linked_to_purchase"] >= 2
    c102 = events.filter(pl.col("order_id") == "C102")
    assert c102.height == 1  # the unflipped first copy (keeping the flipped second would count one more flip)
    assert report.changed["return_quantity_made_positive"] == (3 if drop_missing_user else 4)
    assert (events["user_id"].null_count() > 0) is (not drop_missing_user)


def test_s3_sources_same_as_in_process(ray_session, s3_prefix: str) -> None:
    from ecomine import storage

    storage.write_text(f"{s3_prefix}/old.csv", OLD)
    storage.write_text(f"{s3_prefix}/new.csv", NEW)
    spec = _spec(f"{s3_prefix}/old.csv", f"{s3_prefix}/new.csv", drop_missing_user=True)
    expected = load_events(spec)
    got = load_events_ray(spec, user_buckets=2)
    assert_same(expected, got)
    assert [s.sha256 for s in got[1].sources] == [None, None] and got[1].rows_read == 19


def test_bad_value_inside_a_block_is_a_data_error(ray_session, tmp_path: Path) -> None:
    (tmp_path / "old.csv").write_text(OLD.replace("2021-01-05 12:00:00", "yesterday"))
    (tmp_path / "new.csv").write_text(NEW)
    spec = _spec(tmp_path / "old.csv", tmp_path / "new.csv", drop_missing_user=True)
    with pytest.raises(DataError, match=r"old\.csv: column 'InvoiceDate' \(mapped to ts\): unparseable timestamp 'yesterday'"):
        load_events_ray(spec)


@pytest.mark.shared_data
def test_online_retail_same_as_in_process(ray_session, online_retail_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("ECOMINE_DATA", str(online_retail_dir.parent))
    spec = load_spec(resolve_data_spec_path("online-retail"), DataSpec)
    expected = load_events(spec)
    got = load_events_ray(spec)
    assert_same(expected, got)
    assert got[1].rows_read == 1_067_370 and got[1].dropped["overlap"] == 22_523
    # `data build --engine ray` writes these tables from `got`: the same rows in the same order,
    # so every feature table is the in-process one (test_data_build_engines runs the command).
    assert expected[0].equals(got[0])
    assert_same_features(build_features(expected[0]), build_features(got[0]))
