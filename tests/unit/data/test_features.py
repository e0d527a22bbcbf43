"""Feature builders on hand-made frames with answers worked out by hand."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecomine.data.features import (
    DEMAND_COVARIATES,
    RISK_FEATURES,
    demand_series,
    item_catalogue,
    risk_examples,
    rfm_features,
    uk_bank_holidays,
    user_sequences,
)
from ecomine.data.schema import EVENT_COLUMNS, validate_events

UTC = dt.timezone.utc
T0 = dt.datetime(2011, 3, 1, 10, 0, tzinfo=UTC)


def at(days: float = 0, hours: float = 0) -> dt.datetime:
    return T0 + dt.timedelta(days=days, hours=hours)


def events(rows: list[dict], **extra: pl.DataType) -> pl.DataFrame:
    """A canonical frame from dicts; missing canonical fields take defaults."""
    defaults = {
        "user_id": "u1",
        "item_id": "i1",
        "ts": T0,
        "event": "purchase",
        "quantity": 1,
        "price": 1.0,
        "order_id": None,
        "item_text": None,
        "linked_order_id": None,
    }
    full = [{**defaults, **r} for r in rows]
    schema = {**EVENT_COLUMNS, **extra}
    return validate_events(pl.DataFrame(full, schema=schema))


# --------------------------------------------------------------- user_sequences


def test_sequences_order_ties_and_same_order_collapse() -> None:
    ev = events(
        [
            {"item_id": "c", "ts": at(2), "order_id": "o3"},
            {"item_id": "b", "ts": at(1), "order_id": "o2"},  # same ts as o1, later order id
            {"item_id": "a", "ts": at(1), "order_id": "o1"},
            {"item_id": "z", "ts": at(1), "order_id": "o1"},  # same order, later row
            {"item_id": "a", "ts": at(1), "order_id": "o1"},  # same item, same order: collapses
            {"item_id": "r", "ts": at(1.5), "event": "return", "order_id": "C1"},  # not a purchase
            {"user_id": "u0", "item_id": "q", "ts": at(5), "order_id": "o9"},
        ]
    )
    seq = user_sequences(ev)
    assert seq["user_id"].to_list() == ["u0", "u1"]  # sorted by user
    row = seq.filter(pl.col("user_id") == "u1").row(0, named=True)
    assert row["items"] == ["a", "z", "b", "c"]
    assert row["ts"] == [at(1), at(1), at(1), at(2)]
    assert row["n"] == 4


def test_sequences_consecutive_dedupe_and_min_len() -> None:
    ev = events(
        [
            {"item_id": "a", "ts": at(0), "order_id": "o1"},
            {"item_id": "a", "ts": at(1), "order_id": "o2"},  # repeat across orders
            {"item_id": "b", "ts": at(2), "order_id": "o3"},
            {"item_id": "a", "ts": at(3), "order_id": "o4"},  # not consecutive: kept
            {"user_id": "u2", "item_id": "x", "ts": at(0), "order_id": "o5"},
        ]
    )
    assert user_sequences(ev).filter(pl.col("user_id") == "u1")["items"].to_list() == [["a", "b", "a"]]
    raw = user_sequences(ev, dedupe_consecutive=False)
    assert raw.filter(pl.col("user_id") == "u1")["items"].to_list() == [["a", "a", "b", "a"]]
    assert user_sequences(ev, min_len=2)["user_id"].to_list() == ["u1"]


def test_sequences_null_order_rows_stand_alone_and_event_choice() -> None:
    ev = events(
        [
            {"item_id": "a", "ts": at(0), "event": "view"},
            {"item_id": "a", "ts": at(1), "event": "view"},
            {"item_id": "b", "ts": at(2), "event": "cart"},
        ]
    )
    assert user_sequences(ev, event="view", dedupe_consecutive=False)["items"].to_list() == [["a", "a"]]
    assert user_sequences(ev, event=["view", "cart"])["items"].to_list() == [["a", "b"]]
    with pytest.raises(ValueError, match="bought"):
        user_sequences(ev, event="bought")


def test_sequences_deterministic_under_row_shuffle() -> None:
    # ts ties broken by order id: the input row order does not matter
    ev = events(
        [{"item_id": f"i{k}", "ts": at(k % 3), "order_id": f"o{k:02d}", "user_id": f"u{k % 2}"} for k in range(20)]
    )
    a = user_sequences(ev)
    b = user_sequences(ev.sample(fraction=1.0, shuffle=True, seed=3))
    assert a.equals(b)


# ------------------------------------------------------------------------ RFM


def test_rfm_values_by_hand() -> None:
    ev = events(
        [
            # u1: order o1 (2 lines) at day 0 10:00, order o2 (1 line) at day 10 15:00
            {"item_id": "a", "ts": at(0), "order_id": "o1", "quantity": 2, "price": 3.0},
            {"item_id": "b", "ts": at(0), "order_id": "o1", "quantity": 1, "price": 4.0},
            {"item_id": "a", "ts": at(10, 5), "order_id": "o2", "quantity": 5, "price": 2.0},
            {"item_id": "b", "ts": at(12), "event": "return", "order_id": "C1", "quantity": 1, "price": 4.0},
            # after as_of: ignored
            {"item_id": "c", "ts": at(30), "order_id": "o9", "quantity": 100, "price": 100.0},
            # u2: only a view, then nothing bought
            {"user_id": "u2", "item_id": "a", "ts": at(5), "event": "view"},
        ],
        country=pl.String,
    ).with_columns(pl.Series("country", ["UK", "UK", "France", "UK", "UK", None]))
    rfm = rfm_features(ev, as_of=dt.datetime(2011, 3, 21, 10, 0))  # naive = UTC = day 20
    u1 = rfm.filter(pl.col("user_id") == "u1").row(0, named=True)
    assert u1["recency_days"] == pytest.approx(20 - (10 + 5 / 24))
    assert u1["frequency"] == 2
    assert u1["monetary"] == pytest.approx(2 * 3 + 4 + 5 * 2)
    assert u1["net_monetary"] == pytest.approx(20 - 4)
    assert u1["n_lines"] == 3 and u1["n_items"] == 2
    assert u1["avg_basket_size"] == pytest.approx(1.5)
    assert u1["avg_basket_value"] == pytest.approx(10.0)
    assert u1["n_returns"] == 1
    assert u1["return_rate"] == pytest.approx(1 / 3)
    assert u1["tenure_days"] == pytest.approx(20.0)
    assert u1["fav_hour"] == 10  # tie 10 vs 15 -> smaller
    assert u1["fav_dow"] == 2  # 2011-03-01 was a Tuesday; tie Tue/Fri -> smaller
    assert u1["country"] == "UK"
    u2 = rfm.filter(pl.col("user_id") == "u2").row(0, named=True)
    assert u2["frequency"] == 0 and u2["monetary"] == 0.0 and u2["recency_days"] is None
    assert u2["return_rate"] is None and u2["tenure_days"] == pytest.approx(15.0)
    assert u2["country"] is None


def test_rfm_default_reference_is_last_event() -> None:
    ev = events(
        [
            {"item_id": "a", "ts": at(0), "order_id": "o1"},
            {"user_id": "u2", "item_id": "a", "ts": at(4), "order_id": "o2"},
        ]
    )
    rfm = rfm_features(ev)
    assert rfm["recency_days"].to_list() == [pytest.approx(4.0), pytest.approx(0.0)]
    assert "country" not in rfm.columns


# --------------------------------------------------------------------- demand


def _day(d: int) -> dt.datetime:
    return dt.datetime(2011, 12, 19, 9, tzinfo=UTC) + dt.timedelta(days=d)  # a Monday


def test_demand_daily_zero_filled_sums_and_prices() -> None:
    ev = events(
        [
            {"item_id": "a", "ts": _day(0), "order_id": "o1", "quantity": 2, "price": 1.0},
            {"item_id": "a", "ts": _day(0), "order_id": "o2", "quantity": 2, "price": 2.0},
            {"item_id": "a", "ts": _day(3), "order_id": "o3", "quantity": 1, "price": 5.0},
            {"item_id": "b", "ts": _day(6), "order_id": "o4", "quantity": 7, "price": 3.0},
            {"item_id": "a", "ts": _day(4), "event": "return", "order_id": "C1", "quantity": 1, "price": 5.0},
        ]
    )
    d = demand_series(ev)
    assert d.height == 2 * 7  # items x days, days 0..6
    assert d.columns[:6] == ["item_id", "date", "units", "avg_price", "n_orders", "revenue"]
    assert set(DEMAND_COVARIATES) <= set(d.columns)
    a = d.filter(pl.col("item_id") == "a")
    assert a["units"].to_list() == [4, 0, 0, 1, 0, 0, 0]  # gross: the return is not subtracted
    assert a["n_orders"].to_list() == [2, 0, 0, 1, 0, 0, 0]
    assert a["avg_price"].to_list() == [1.5, 1.5, 1.5, 5.0, 5.0, 5.0, 5.0]  # revenue/units, carried
    b = d.filter(pl.col("item_id") == "b")
    assert b["units"].sum() == 7
    assert b["avg_price"].to_list() == [3.0] * 7  # leading gap: first price of the window
    assert d["date"].to_list()[:2] == [dt.date(2011, 12, 19), dt.date(2011, 12, 20)]
    net = demand_series(ev, net=True).filter(pl.col("item_id") == "a")
    assert net["units"].to_list() == [4, 0, 0, 1, -1, 0, 0]


def test_demand_calendar_covariates() -> None:
    ev = events([{"item_id": "a", "ts": _day(0)}, {"item_id": "a", "ts": _day(13)}])
    d = demand_series(ev).with_columns(pl.col("date").cast(pl.String))
    row = {r["date"]: r for r in d.iter_rows(named=True)}
    mon = row["2011-12-19"]
    assert (mon["day_of_week"], mon["is_weekend"], mon["month"]) == (1, False, 12)
    assert mon["days_to_christmas"] == 6 and mon["day_of_year"] == 353 and mon["week_of_year"] == 51
    assert row["2011-12-24"]["is_weekend"] and row["2011-12-25"]["days_to_christmas"] == 0
    assert row["2011-12-26"]["days_to_christmas"] == (dt.date(2012, 12, 25) - dt.date(2011, 12, 26)).days
    # Christmas 2011 fell on a Sunday: bank holidays Mon 26 and Tue 27
    assert [r for r, v in row.items() if v["is_uk_holiday"]] == ["2011-12-26", "2011-12-27"]
    assert row["2012-01-01"]["week_of_year"] == 52  # ISO week of the previous year


def test_demand_weekly_iso_weeks_and_bounds() -> None:
    ev = events(
        [
            {"item_id": "a", "ts": _day(-1), "quantity": 3, "price": 9.0},  # Sunday 18th: week of 12th
            {"item_id": "a", "ts": _day(0), "quantity": 1, "price": 2.0},  # Monday 19th
            {"item_id": "a", "ts": _day(6), "quantity": 4, "price": 2.0},  # Sunday 25th
            {"item_id": "a", "ts": _day(7), "quantity": 5, "price": 2.0},  # Monday 26th
        ]
    )
    w = demand_series(ev, freq="1w")
    assert w["date"].to_list() == [dt.date(2011, 12, 12), dt.date(2011, 12, 19), dt.date(2011, 12, 26)]
    assert w["units"].to_list() == [3, 5, 5]
    assert w["day_of_week"].to_list() == [1, 1, 1]
    assert w["is_uk_holiday"].to_list() == [False, False, True]  # 26-27 Dec in the last week
    # explicit window, items incl. one never sold; price before the window seeds the carry
    w2 = demand_series(
        ev, freq="1w", items=["a", "zz"], start=dt.date(2011, 12, 21), end=dt.date(2012, 1, 9)
    )
    assert w2.height == 2 * 4  # weeks of 19 Dec, 26 Dec, 2 Jan, 9 Jan
    a = w2.filter(pl.col("item_id") == "a")
    assert a["units"].to_list() == [5, 5, 0, 0]
    zz = w2.filter(pl.col("item_id") == "zz")
    assert zz["units"].to_list() == [0, 0, 0, 0] and zz["avg_price"].null_count() == 4
    d = demand_series(ev, start=dt.date(2011, 12, 19), end=dt.date(2011, 12, 20))
    assert d["avg_price"].to_list() == [2.0, 2.0]
    d2 = demand_series(ev, start=dt.date(2011, 12, 20), end=dt.date(2011, 12, 21))
    assert d2["avg_price"].to_list() == [2.0, 2.0]  # seeded by the 19th, before the window
    with pytest.raises(ValueError, match="freq"):
        demand_series(ev, freq="1m")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="after end"):
        demand_series(ev, start=dt.date(2012, 1, 2), end=dt.date(2012, 1, 1))


def test_uk_bank_holidays_known_years() -> None:
    hol = set(uk_bank_holidays(2009, 2027))
    for y in range(2009, 2028):
        n = sum(1 for d in hol if d.year == y)
        assert n == {2011: 9, 2012: 9, 2022: 10, 2023: 9}.get(y, 8), y
    expected = {
        dt.date(2010, 4, 2), dt.date(2010, 4, 5), dt.date(2010, 12, 27), dt.date(2010, 12, 28),
        dt.date(2011, 1, 3), dt.date(2011, 4, 29), dt.date(2011, 5, 2), dt.date(2011, 8, 29),
        dt.date(2012, 1, 2), dt.date(2012, 6, 4), dt.date(2012, 6, 5), dt.date(2020, 5, 8),
        dt.date(2022, 6, 2), dt.date(2022, 6, 3), dt.date(2022, 9, 19), dt.date(2023, 5, 8),
        dt.date(2024, 3, 29), dt.date(2024, 4, 1), dt.date(2027, 12, 27), dt.date(2027, 12, 28),
    }
    assert expected <= hol
    assert dt.date(2012, 5, 28) not in hol and dt.date(2020, 5, 4) not in hol


def test_uk_bank_holidays_go_on_past_the_former_table() -> None:
    # the hand-written table ended in 2027: every later day was silently "not a holiday"
    hol = set(uk_bank_holidays(2028, 2035))
    assert all(sum(1 for d in hol if d.year == y) == 8 for y in range(2028, 2036))
    assert {dt.date(2030, 4, 19), dt.date(2030, 4, 22), dt.date(2032, 12, 27), dt.date(2032, 12, 28)} <= hol
    assert all(d.weekday() < 5 for d in hol)


# ----------------------------------------------------------------------- risk


def test_risk_label_window_user_item_and_link() -> None:
    ev = events(
        [
            {"item_id": "a", "ts": at(0), "order_id": "o1"},
            {"item_id": "b", "ts": at(0), "order_id": "o1"},
            {"item_id": "c", "ts": at(0), "order_id": "o1"},
            {"item_id": "d", "ts": at(0), "order_id": "o1"},
            {"item_id": "e", "ts": at(0), "order_id": "o1"},
            {"item_id": "e", "ts": at(1), "order_id": "o2"},
            # a: returned exactly 60 days later -> 1; b: 61 days later -> 0
            {"item_id": "a", "ts": at(60), "event": "return", "order_id": "C1"},
            {"item_id": "b", "ts": at(61), "event": "return", "order_id": "C1"},
            # c: another user's return -> 0 ; d: another item of the same user -> 0
            {"user_id": "u2", "item_id": "c", "ts": at(2), "event": "return", "order_id": "C2"},
            {"item_id": "zz", "ts": at(2), "event": "return", "order_id": "C3"},
            # e: a return linked to o2 labels o2's line, not o1's
            {"item_id": "e", "ts": at(3), "event": "return", "order_id": "C4", "linked_order_id": "o2"},
        ]
    )
    r = risk_examples(ev, horizon_days=60)
    got = {(x["order_id"], x["item_id"]): x["returned"] for x in r.iter_rows(named=True)}
    assert got == {
        ("o1", "a"): 1,
        ("o1", "b"): 0,
        ("o1", "c"): 0,
        ("o1", "d"): 0,
        ("o1", "e"): 0,
        ("o2", "e"): 1,
    }
    assert r.height == 6 and r["returned"].dtype == pl.Int8
    assert (r["label_closed_at"] == r["ts"] + dt.timedelta(days=60)).all()
    assert r["line_id"].to_list() == [0, 1, 2, 3, 4, 5]
    assert set(RISK_FEATURES) <= set(r.columns)


def test_risk_return_before_purchase_does_not_label_it() -> None:
    ev = events(
        [
            {"item_id": "a", "ts": at(0), "event": "return", "order_id": "C0"},
            {"item_id": "a", "ts": at(1), "order_id": "o1"},
        ]
    )
    assert risk_examples(ev)["returned"].to_list() == [0]


def test_risk_history_ignores_same_time_and_later_events() -> None:
    ev = events(
        [
            {"item_id": "a", "ts": at(0), "order_id": "o1", "quantity": 2, "price": 1.0},
            {"item_id": "b", "ts": at(0), "order_id": "o1", "quantity": 4, "price": 3.0},
            {"item_id": "a", "ts": at(1), "event": "return", "order_id": "C1"},
            {"user_id": "u2", "item_id": "a", "ts": at(3), "order_id": "o2", "quantity": 1, "price": 2.0},
            {"item_id": "a", "ts": at(10), "order_id": "o3", "quantity": 6, "price": 1.5},
            {"item_id": "c", "ts": at(10), "order_id": "o3", "quantity": 1, "price": 1.0},
        ]
    )
    r = risk_examples(ev)
    first = r.filter(pl.col("order_id") == "o1").to_dicts()
    for row in first:  # nothing before day 0 -- not even the other line of the same order
        assert row["cust_prior_orders"] == 0 and row["cust_prior_lines"] == 0
        assert row["cust_prior_returns"] == 0 and row["cust_prior_return_rate"] is None
        assert row["cust_days_since_prev_order"] is None and row["cust_tenure_days"] == 0.0
        assert row["item_prior_purchases"] == 0 and row["item_prior_return_rate"] is None
        assert row["qty_rel_cust_mean"] is None and row["price_rel_item_mean"] is None
    u2 = r.filter(pl.col("order_id") == "o2").row(0, named=True)
    assert u2["cust_prior_orders"] == 0 and u2["item_prior_purchases"] == 1
    assert u2["item_prior_return_rate"] == pytest.approx(1.0)  # a: 1 line, 1 return before day 3
    assert u2["price_rel_item_mean"] == pytest.approx(2.0)
    o3a = r.filter(pl.col("order_id") == "o3", pl.col("item_id") == "a").row(0, named=True)
    assert o3a["cust_prior_orders"] == 1 and o3a["cust_prior_lines"] == 2
    assert o3a["cust_prior_returns"] == 1 and o3a["cust_prior_return_rate"] == pytest.approx(0.5)
    assert o3a["cust_days_since_prev_order"] == pytest.approx(10.0)
    assert o3a["cust_tenure_days"] == pytest.approx(10.0)
    assert o3a["item_prior_purchases"] == 2  # o1 and u2's o2, not o3's own line
    assert o3a["item_prior_return_rate"] == pytest.approx(0.5)
    assert o3a["qty_rel_cust_mean"] == pytest.approx(6 / 3)  # prior mean qty (2+4)/2
    assert o3a["price_rel_item_mean"] == pytest.approx(1.5 / 1.5)  # prior mean price (1+2)/2
    assert (o3a["hour"], o3a["day_of_week"]) == (10, 5)  # 2011-03-11 was a Friday
    # a later event that would change the features if it leaked: same result
    later = pl.concat(
        [ev, events([{"item_id": "a", "ts": at(0, -1) + dt.timedelta(days=100), "event": "return"}])]
    )
    cols = [c for c in RISK_FEATURES]
    assert risk_examples(later).select(cols).equals(r.select(cols))


# A brute-force reference: every feature from its definition, line by line.
def _reference(ev: pl.DataFrame, horizon: int) -> list[dict]:
    rows = ev.with_row_index("line_id").to_dicts()
    out = []
    for p in rows:
        if p["event"] != "purchase":
            continue
        t = p["ts"]
        before = [r for r in rows if r["ts"] < t]
        mine = [r for r in before if r["user_id"] == p["user_id"]]
        my_lines = [r for r in mine if r["event"] == "purchase"]
        my_returns = [r for r in mine if r["event"] == "return"]
        item_lines = [r for r in before if r["item_id"] == p["item_id"] and r["event"] == "purchase"]
        item_returns = [r for r in before if r["item_id"] == p["item_id"] and r["event"] == "return"]
        first = min((r["ts"] for r in rows if r["user_id"] == p["user_id"]), default=t)
        returned = any(
            r["event"] == "return"
            and r["user_id"] == p["user_id"]
            and r["item_id"] == p["item_id"]
            and t <= r["ts"] <= t + dt.timedelta(days=horizon)
            and r["linked_order_id"] in (None, p["order_id"])
            for r in rows
        )
        mean_q = sum(r["quantity"] for r in my_lines) / len(my_lines) if my_lines else None
        mean_p = sum(r["price"] for r in item_lines) / len(item_lines) if item_lines else None
        out.append(
            {
                "line_id": p["line_id"],
                "returned": int(returned),
                "cust_prior_orders": len({r["order_id"] for r in my_lines}),
                "cust_prior_lines": len(my_lines),
                "cust_prior_returns": len(my_returns),
                "cust_prior_return_rate": len(my_returns) / len(my_lines) if my_lines else None,
                "cust_days_since_prev_order": (t - max(r["ts"] for r in my_lines)).total_seconds() / 86400
                if my_lines
                else None,
                "cust_tenure_days": (t - first).total_seconds() / 86400 if first < t else 0.0,
                "item_prior_purchases": len(item_lines),
                "item_prior_return_rate": len(item_returns) / len(item_lines) if item_lines else None,
                "qty_rel_cust_mean": p["quantity"] / mean_q if mean_q else None,
                "price_rel_item_mean": p["price"] / mean_p if mean_p else None,
            }
        )
    return sorted(out, key=lambda x: x["line_id"])


@st.composite
def _logs(draw: st.DrawFn) -> pl.DataFrame:
    rows = []
    n_orders = draw(st.integers(1, 8))
    for k in range(n_orders):
        user = draw(st.sampled_from(["u1", "u2"]))
        ts = at(draw(st.integers(0, 90)))
        for item in draw(st.lists(st.sampled_from("abc"), min_size=1, max_size=3)):
            rows.append(
                {"user_id": user, "item_id": item, "ts": ts, "order_id": f"o{k}",
                 "quantity": draw(st.integers(1, 5)), "price": float(draw(st.integers(1, 4)))}
            )
    for k in range(draw(st.integers(0, 5))):
        rows.append(
            {"user_id": draw(st.sampled_from(["u1", "u2"])), "item_id": draw(st.sampled_from("abc")),
             "ts": at(draw(st.integers(0, 120))), "event": "return", "order_id": f"C{k}",
             "linked_order_id": draw(st.sampled_from([None, "o0", "o1"]))}
        )
    order = draw(st.permutations(range(len(rows))))
    return events([rows[i] for i in order])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_logs(), st.sampled_from([0, 30, 60]))
def test_risk_matches_bruteforce_reference(ev: pl.DataFrame, horizon: int) -> None:
    got = risk_examples(ev, horizon_days=horizon).sort("line_id")
    want = _reference(ev, horizon)
    assert got["line_id"].to_list() == [w["line_id"] for w in want]
    for g, w in zip(got.iter_rows(named=True), want, strict=True):
        for k, v in w.items():
            if v is None or isinstance(v, int):
                assert g[k] == v, (k, g, w)
            else:
                assert g[k] is not None and math.isclose(g[k], v), (k, g, w)


# ------------------------------------------------------------------ catalogue


def test_item_catalogue() -> None:
    ev = events(
        [
            {"item_id": "a", "ts": at(0), "item_text": "RED MUG", "price": 1.0},
            {"item_id": "a", "ts": at(1), "item_text": "RED MUG ", "price": 3.0},
            {"item_id": "a", "ts": at(2), "item_text": "RED MUG", "price": 2.0, "quantity": 5},
            {"item_id": "a", "ts": at(3), "item_text": None, "event": "return", "price": 9.0},
            {"item_id": "b", "ts": at(4), "item_text": "?", "event": "view", "price": 4.0},
        ],
        category=pl.String,
    ).with_columns(pl.Series("category", ["mugs", "mugs", "cups", None, None]))
    cat = item_catalogue(ev)
    assert cat.columns == [
        "item_id", "item_text", "category", "n_purchases", "units_sold", "first_seen", "last_seen", "median_price"
    ]
    a, b = cat.to_dicts()
    assert (a["item_text"], a["category"], a["n_purchases"], a["units_sold"]) == ("RED MUG", "mugs", 3, 7)
    assert (a["first_seen"], a["last_seen"], a["median_price"]) == (at(0), at(3), 2.0)
    assert (b["item_id"], b["n_purchases"], b["median_price"], b["category"]) == ("b", 0, 4.0, None)


def test_missing_column_is_named() -> None:
    with pytest.raises(ValueError, match="order_id"):
        risk_examples(events([{}]).drop("order_id"))


# ---------------------------------------------------------- real shared data


@pytest.mark.shared_data
def test_builders_on_online_retail(online_retail_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ecomine.data.cleaning import load_events
    from ecomine.datasets import resolve_data_spec_path
    from ecomine.specs import DataSpec, load_spec

    monkeypatch.setenv("ECOMINE_DATA", str(online_retail_dir.parent))
    ev, _ = load_events(load_spec(resolve_data_spec_path("online-retail"), DataSpec))
    seq = user_sequences(ev)
    assert 5_000 < seq.height < 6_000 and seq["n"].min() >= 1
    d = demand_series(ev, freq="1w")
    assert d.height == d["item_id"].n_unique() * d["date"].n_unique()
    bought = ev.filter(pl.col("event") == "purchase")["quantity"].sum()
    assert d["units"].sum() == bought
    assert d["avg_price"].null_count() == 0
    r = risk_examples(ev)
    assert r.height == ev.filter(pl.col("event") == "purchase").height
    assert 0.005 < r["returned"].mean() < 0.1
    rfm = rfm_features(ev)
    assert rfm.height == ev["user_id"].n_unique() and rfm["country"].null_count() == 0


def test_public_names_exist() -> None:
    import ecomine.data.augment as augment
    import ecomine.data.features as features
    import ecomine.data.splits as splits
    import ecomine.data.text as text

    for mod in (features, text, splits, augment):
        public = {n for n, v in vars(mod).items() if callable(v) and getattr(v, "__module__", "") == mod.__name__}
        public = {n for n in public if not n.startswith("_")}
        assert public <= set(mod.__all__), (mod.__name__, public - set(mod.__all__))
        assert all(hasattr(mod, n) for n in mod.__all__)
