"""The packaged Online Retail spec on the real shared files (skipped without ../shared)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from ecomine.data.cleaning import load_events
from ecomine.datasets import resolve_data_spec_path
from ecomine.specs import DataSpec, load_spec

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def cleaned(online_retail_dir: Path, monkeypatch_module=None):
    import os

    os.environ["ECOMINE_DATA"] = str(online_retail_dir.parent)
    try:
        return load_events(load_spec(resolve_data_spec_path("online-retail"), DataSpec))
    finally:
        del os.environ["ECOMINE_DATA"]


def test_rows_read_and_overlap(cleaned) -> None:
    _, report = cleaned
    assert [s.rows_read for s in report.sources] == [525_461, 541_909]
    assert report.rows_read == 1_067_370
    assert report.rows_after_overlap == 1_044_847
    assert report.dropped["overlap"] == 22_523


def test_every_row_accounted_for(cleaned) -> None:
    events, report = cleaned
    assert report.rows_out == events.height
    assert report.rows_read == report.rows_out + sum(report.dropped.values())
    assert report.dropped["missing_user"] > 200_000
    assert report.dropped["non_product"] > 0 and report.dropped["duplicate"] > 0


def test_clean_events_are_sane(cleaned) -> None:
    events, report = cleaned
    assert events["user_id"].null_count() == 0
    assert (events["price"] > 0).all() and (events["quantity"] > 0).all()
    assert not events["item_id"].is_in(["POST", "DOT", "M", "BANK CHARGES", "AMAZONFEE"]).any()
    assert events.filter(pl.col("user_id") == "17850").height > 0  # float ids read as integer text
    assert report.first_ts.year == 2009 and report.last_ts.year == 2011
    linked = events.filter(pl.col("linked_order_id").is_not_null())
    assert linked.height > 0.8 * report.events["return"]
