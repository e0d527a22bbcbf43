"""Splits: leave-one-out never leaks a target into inputs; temporal split honours label closing."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecomine.data.splits import Splits, leave_one_out, temporal_split

UTC = dt.timezone.utc


def test_leave_one_out_by_hand() -> None:
    t = [dt.datetime(2011, 1, d, tzinfo=UTC) for d in range(1, 5)]
    seqs = pl.DataFrame(
        {
            "user_id": ["b", "a", "c"],
            "items": [["x", "y"], ["1", "2", "3", "4"], ["p", "q", "p"]],
            "ts": [t[:2], t, t[:3]],
            "n": [2, 4, 3],
        }
    )
    s = leave_one_out(seqs)
    assert isinstance(s, Splits)
    assert s.train.to_dict(as_series=False) == {
        "user_id": ["a", "b", "c"],
        "items": [["1", "2"], ["x", "y"], ["p"]],  # b is too short: all of it, train only
        "ts": [t[:2], t[:2], t[:1]],
    }
    assert s.valid.to_dict(as_series=False) == {
        "user_id": ["a", "c"],
        "history": [["1", "2"], ["p"]],
        "target": ["3", "q"],
        "history_ts": [t[:2], t[:1]],
        "target_ts": [t[2], t[1]],
    }
    assert s.test.select("user_id", "history", "target").to_dict(as_series=False) == {
        "user_id": ["a", "c"],
        "history": [["1", "2", "3"], ["p", "q"]],
        "target": ["4", "p"],  # a repeat purchase: the item is in history by position, not leaked
    }
    assert s.sizes() == {"train": 3, "valid": 2, "test": 2}


def test_leave_one_out_min_len_and_columns() -> None:
    seqs = pl.DataFrame({"user_id": ["a"], "items": [["1", "2", "3"]]})
    assert leave_one_out(seqs, min_len=4).valid.height == 0
    assert leave_one_out(seqs, min_len=4).train["items"].to_list() == [["1", "2", "3"]]
    assert leave_one_out(seqs).test.columns == ["user_id", "history", "target"]
    with pytest.raises(ValueError, match="min_len=2"):
        leave_one_out(seqs, min_len=2)
    with pytest.raises(ValueError, match="'items'"):
        leave_one_out(seqs.rename({"items": "seq"}))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 30), min_size=0, max_size=12), min_size=1, max_size=20),
    st.integers(3, 6),
)
def test_leave_one_out_never_leaks(raw: list[list[int]], min_len: int) -> None:
    seqs = pl.DataFrame(
        {
            "user_id": [f"u{k:02d}" for k in range(len(raw))],
            # each position carries a unique tag so "by position" is checkable by value
            "items": [[f"{v}@{k}" for k, v in enumerate(r)] for r in raw],
        },
        schema={"user_id": pl.String, "items": pl.List(pl.String)},
    )
    s = leave_one_out(seqs, min_len=min_len)
    full = dict(zip(seqs["user_id"], seqs["items"].to_list(), strict=True))
    train = dict(zip(s.train["user_id"], s.train["items"].to_list(), strict=True))
    assert set(train) == set(full)  # every user trains
    valid = {r["user_id"]: r for r in s.valid.iter_rows(named=True)}
    test = {r["user_id"]: r for r in s.test.iter_rows(named=True)}
    assert set(valid) == set(test) == {u for u, v in full.items() if len(v) >= min_len}
    for u, items in full.items():
        if u not in test:
            assert train[u] == items
            continue
        v, t = valid[u], test[u]
        assert v["target"] not in train[u]
        assert t["target"] not in train[u] and t["target"] not in v["history"]
        assert train[u] == v["history"] == items[:-2]
        assert t["history"] == items[:-1] and [*t["history"], t["target"]] == items
        assert [*v["history"], v["target"]] == t["history"]


# -------------------------------------------------------------- temporal


def _rows() -> pl.DataFrame:
    ts = [dt.datetime(2011, 1, d, 12, tzinfo=UTC) for d in range(1, 11)]
    return pl.DataFrame(
        {"k": list(range(10)), "ts": ts, "closed": [t + dt.timedelta(days=3) for t in ts]}
    )


def test_temporal_split_boundaries() -> None:
    f = _rows()
    s = temporal_split(f, cutoff=dt.datetime(2011, 1, 6, 12, tzinfo=UTC))
    assert s.train["k"].to_list() == [0, 1, 2, 3, 4]
    assert s.test["k"].to_list() == [5, 6, 7, 8, 9]  # at the cutoff -> test
    assert s.valid.height == 0 and s.valid.columns == f.columns
    s2 = temporal_split(f, cutoff=dt.date(2011, 1, 8), valid_cutoff=dt.datetime(2011, 1, 4, 12))
    assert s2.train["k"].to_list() == [0, 1, 2]
    assert s2.valid["k"].to_list() == [3, 4, 5, 6]  # [valid_cutoff, cutoff); naive = UTC
    assert s2.test["k"].to_list() == [7, 8, 9]
    with pytest.raises(ValueError, match="valid_cutoff"):
        temporal_split(f, cutoff=dt.date(2011, 1, 4), valid_cutoff=dt.date(2011, 1, 5))
    with pytest.raises(ValueError, match="'when'"):
        temporal_split(f, ts_col="when", cutoff=dt.date(2011, 1, 4))


def test_temporal_split_honours_label_closing() -> None:
    f = _rows()
    cut = dt.datetime(2011, 1, 8, 12, tzinfo=UTC)
    s = temporal_split(f, cutoff=cut, label_closed_col="closed")
    # labels close 3 days after ts: only rows with ts <= Jan 5 12:00 are trusted for train
    assert s.train["k"].to_list() == [0, 1, 2, 3, 4]
    assert (s.train["closed"] <= cut).all()
    assert s.test["k"].to_list() == [7, 8, 9]  # test unfiltered without `end`
    s2 = temporal_split(
        f, cutoff=cut, valid_cutoff=dt.datetime(2011, 1, 5, 12, tzinfo=UTC),
        label_closed_col="closed", end=dt.datetime(2011, 1, 13, 12, tzinfo=UTC),
    )
    assert s2.train["k"].to_list() == [0, 1]  # closed by the valid cutoff
    assert s2.valid["k"].to_list() == [4]  # closed by the cutoff (Jan 6 closes on the 9th)
    assert s2.test["k"].to_list() == [7, 8, 9]  # closed by `end`
    s3 = temporal_split(f, cutoff=cut, label_closed_col="closed", end=dt.date(2011, 1, 12))
    assert s3.test["k"].to_list() == [7]


def test_temporal_split_on_date_column() -> None:
    f = pl.DataFrame({"date": [dt.date(2011, 1, d) for d in range(1, 6)], "units": [1, 2, 3, 4, 5]})
    s = temporal_split(f, ts_col="date", cutoff=dt.date(2011, 1, 4))
    assert s.train["units"].to_list() == [1, 2, 3] and s.test["units"].to_list() == [4, 5]
