"""ecomine.datasets.synthetic: determinism, canonical shape, and that what it plants shows in the data."""

from __future__ import annotations

import json
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError

from ecomine.data.schema import EVENT_COLUMNS, validate_events
from ecomine.datasets import synthetic
from ecomine.datasets.synthetic import (
    RETURN_FACTORS,
    RISKY_CATEGORIES,
    RISKY_COUNTRY,
    SynthLog,
    SynthParams,
    describe,
    generate,
    repeat_share,
    write,
)

TINY = SynthParams(users=200, items=80, days=120, seed=7)


@pytest.fixture(scope="module")
def log() -> SynthLog:
    """The default log (1000 users, 300 items, 365 days from 2023-01-01)."""
    return generate(SynthParams())


@pytest.fixture(scope="module")
def tiny() -> SynthLog:
    return generate(TINY)


def _purchases(log: SynthLog) -> pl.DataFrame:
    return log.events.filter(pl.col("event") == "purchase")


# --------------------------------------------------------------------------- API, params, determinism


def test_all_is_complete_and_importable() -> None:
    for name in synthetic.__all__:
        assert hasattr(synthetic, name), name
    defined_here = {n for n, v in vars(synthetic).items()
                    if not n.startswith("_") and getattr(v, "__module__", None) == synthetic.__name__}
    assert defined_here <= set(synthetic.__all__)


def test_params_match_the_cli_names_and_defaults() -> None:
    p = SynthParams()
    assert (p.users, p.items, p.days, p.seed, p.start, p.n_categories) == (1000, 300, 365, 0, date(2023, 1, 1), 12)
    assert SynthParams.model_validate({"users": 5, "items": 20, "days": 9, "seed": 3}).days == 9


def test_params_errors_name_the_field() -> None:
    with pytest.raises(ValidationError, match="n_categories"):
        SynthParams(items=5, n_categories=8)
    with pytest.raises(ValidationError, match="users"):
        SynthParams(users=0)
    with pytest.raises(ValidationError, match="bogus"):
        SynthParams.model_validate({"bogus": 1})
    with pytest.raises(ValidationError, match="repeat_prob"):
        SynthParams(repeat_prob=0.7, successor_prob=0.5)
    # fewer items than the default categories, categories not given: one category per item
    assert SynthParams(items=5).n_categories == 5


def test_same_seed_same_frames_different_seed_different(tiny: SynthLog) -> None:
    again = generate(TINY)
    assert tiny.events.equals(again.events)
    for name, frame in tiny.truth().items():
        assert frame.equals(again.truth()[name]), name
    other = generate(TINY.model_copy(update={"seed": 8}))
    assert not tiny.events.equals(other.events)
    assert not tiny.items.equals(other.items)


def test_default_and_tiny_sizes_generate_and_tiny_is_smaller() -> None:
    # the CPU seconds are printed, never asserted (a timing belongs in a benchmark, not a test)
    t0 = time.process_time()
    default = generate(SynthParams(seed=3))
    default_s = time.process_time() - t0
    t0 = time.process_time()
    tiny = generate(TINY.model_copy(update={"seed": 3}))
    tiny_s = time.process_time() - t0
    print(f"[synthetic] default log {default_s:.2f} s of CPU, tiny {tiny_s:.2f} s")
    assert 0 < tiny.events.height < default.events.height


# --------------------------------------------------------------------------- shape and sizes


def test_events_are_canonical(log: SynthLog) -> None:
    ev = log.events
    assert validate_events(ev).columns == ev.columns == [*EVENT_COLUMNS, "country", "category"]
    assert ev.schema["country"] == pl.String and ev.schema["category"] == pl.String
    assert ev["linked_order_id"].null_count() == ev.height  # raw output: cleaning links returns
    never_null = ("user_id", "item_id", "ts", "event", "quantity", "price", "item_text", "country", "category")
    assert ev.select(pl.col(c).null_count() for c in never_null).sum_horizontal().item() == 0
    assert set(ev["event"].cast(pl.String).unique()) == {"view", "cart", "purchase", "return"}
    assert (ev["quantity"] > 0).all() and (ev["price"] > 0).all()
    assert ev["ts"].is_sorted()
    with_order = ev.filter(pl.col("event").is_in(["purchase", "return"]))
    assert with_order["order_id"].null_count() == 0
    assert ev.filter(pl.col("event").is_in(["view", "cart"]))["order_id"].null_count() == ev.filter(
        pl.col("event").is_in(["view", "cart"])).height
    buy_ids = _purchases(log)["order_id"]
    assert buy_ids.str.contains(r"^S\d{6}$").all()
    assert ev.filter(pl.col("event") == "return")["order_id"].str.contains(r"^R\d{6}$").all()
    # an order groups several lines, one line per item
    lines = _purchases(log).group_by("order_id").agg(pl.len(), pl.col("item_id").n_unique().alias("items"))
    assert lines["len"].mean() > 2.5 and (lines["len"] == lines["items"]).all()
    # invoices are numbered in time order
    first = _purchases(log).group_by("order_id").agg(pl.col("ts").min()).sort("order_id")
    assert first["ts"].is_sorted()


def test_sizes_and_span_are_honoured(tiny: SynthLog) -> None:
    ev, p = tiny.events, tiny.params
    assert ev["user_id"].n_unique() == p.users == tiny.users.height
    assert ev["item_id"].n_unique() <= p.items == tiny.items.height
    assert ev["item_id"].n_unique() >= 0.8 * p.items
    start = datetime(2023, 1, 1, tzinfo=timezone.utc)
    assert ev["ts"].min() >= start and ev["ts"].max() < start + timedelta(days=p.days)
    assert tiny.item_rates.height == p.items * p.days
    assert tiny.item_rates["date"].min() == date(2023, 1, 1)
    assert tiny.item_rates["date"].max() == date(2023, 1, 1) + timedelta(days=p.days - 1)
    assert tiny.user_interests.height == 2 * p.users * p.n_categories
    assert tiny.items["category"].n_unique() == p.n_categories


def test_other_start_and_sizes() -> None:
    p = SynthParams(users=30, items=15, days=10, seed=1, start=date(2024, 2, 25), n_categories=3)
    small = generate(p)
    assert small.events["ts"].min().date() >= date(2024, 2, 25)
    assert small.events["ts"].max().date() <= date(2024, 3, 5)
    assert small.items["category"].n_unique() == 3
    one = generate(SynthParams(users=1, items=1, days=1))
    assert one.events["user_id"].n_unique() == 1 and one.item_rates.height == 1


# --------------------------------------------------------------------------- items and users


def test_titles_are_non_empty_unique_and_depend_on_category(log: SynthLog) -> None:
    items = log.items
    titles = items["title"]
    assert titles.str.len_chars().min() > 10 and titles.n_unique() == items.height
    assert (titles == titles.str.to_uppercase()).all()
    # the noun phrase ends a title; it names the category for almost every item
    last = items.with_columns(titles.str.split(" ").list.last().alias("noun"))
    purity = last.group_by("noun").agg(pl.col("category").n_unique().alias("k"), pl.len())
    share_pure = purity.filter(pl.col("k") == 1)["len"].sum() / items.height
    assert share_pure > 0.9
    # events carry the title as item_text
    joined = log.events.select("item_id", "item_text").unique().join(items, on="item_id")
    assert (joined["item_text"] == joined["title"]).all()


def test_prices_are_log_normal_like_and_popularity_is_skewed(log: SynthLog) -> None:
    price = log.items["base_price"].to_numpy()
    assert price.min() > 0 and np.median(price) < price.mean() < 3 * np.median(price)
    units = _purchases(log).group_by("item_id").agg(pl.col("quantity").sum()).sort("quantity", descending=True)
    top_decile = units["quantity"][: len(units) // 10].sum() / units["quantity"].sum()
    assert top_decile > 0.2  # Zipf-like: the top 10 % of items sell well over 10 % of units


def test_users_buy_what_they_are_interested_in_and_interests_drift(log: SynthLog) -> None:
    buys = _purchases(log)
    wide = log.user_interests.pivot(on="phase", index=["user_id", "category"], values="weight")
    first_half = buys.filter(pl.col("ts") < datetime(2023, 5, 1, tzinfo=timezone.utc))
    second_half = buys.filter(pl.col("ts") >= datetime(2023, 9, 1, tzinfo=timezone.utc))

    def shares(frame: pl.DataFrame) -> pl.DataFrame:
        n = frame.group_by("user_id", "category").len()
        return n.with_columns((pl.col("len") / pl.col("len").sum().over("user_id")).alias("share"))

    early = wide.join(shares(first_half), on=["user_id", "category"], how="left").fill_null(0)
    late = wide.join(shares(second_half), on=["user_id", "category"], how="left").fill_null(0)
    # purchases follow interests: strong correlation between weight and share
    assert np.corrcoef(early["start"], early["share"])[0, 1] > 0.5
    # drift: early purchases closer to start interests, late ones to end interests
    assert np.corrcoef(early["start"], early["share"])[0, 1] > np.corrcoef(early["end"], early["share"])[0, 1]
    assert np.corrcoef(late["end"], late["share"])[0, 1] > np.corrcoef(late["start"], late["share"])[0, 1]
    # 2-3 favourite categories hold most of a user's interest
    top3 = (log.user_interests.filter(pl.col("phase") == "start")
            .group_by("user_id").agg(pl.col("weight").top_k(3).sum()))
    assert top3["weight"].median() > 0.7


def test_countries_and_wholesale(log: SynthLog) -> None:
    countries = log.users.group_by("country").len().sort("len", descending=True)
    assert countries["country"][0] == "United Kingdom" and countries["len"][0] > 0.7 * log.users.height
    assert RISKY_COUNTRY in countries["country"].to_list()
    q = _purchases(log).join(log.users, on="user_id").group_by("wholesale").agg(pl.col("quantity").median())
    med = dict(q.iter_rows())
    assert med[True] > 4 * med[False]


# --------------------------------------------------------------------------- time


def test_weekly_seasonality_and_closed_day(log: SynthLog) -> None:
    orders = _purchases(log).group_by("order_id").agg(pl.col("ts").min())
    by_day = orders.group_by(pl.col("ts").dt.weekday().alias("wd")).len()
    counts = dict(by_day.iter_rows())  # 1=Mon .. 7=Sun
    assert 6 not in counts  # closed_weekday=5 (Saturday)
    weekday_mean = np.mean([counts[d] for d in (1, 2, 3, 4)])
    assert weekday_mean > 1.4 * counts[7]
    open_sat = generate(TINY.model_copy(update={"closed_weekday": None}))
    assert (_purchases(open_sat)["ts"].dt.weekday() == 6).any()


def test_december_peak(log: SynthLog) -> None:
    orders = _purchases(log).group_by("order_id").agg(pl.col("ts").min())
    per_month = orders.group_by(pl.col("ts").dt.month().alias("m")).len()
    months = dict(per_month.iter_rows())
    ordinary = np.mean([months[m] for m in range(2, 11)])
    assert months[12] > 1.5 * ordinary


def test_item_rates_match_realised_units(log: SynthLog) -> None:
    rates = log.item_rates
    assert (rates["expected_units"] >= 0).all()
    closed = rates.filter(pl.col("date").dt.weekday() == 6)
    assert closed["expected_units"].sum() == 0
    units = (_purchases(log).with_columns(pl.col("ts").dt.date().alias("date"))
             .group_by("item_id", "date").agg(pl.col("quantity").sum().alias("units")))
    x = rates.join(units, on=["item_id", "date"], how="left").fill_null(0)
    assert 0.85 < x["units"].sum() / x["expected_units"].sum() < 1.15  # heavy-tailed wholesale units: sd ~5 %
    per_item = x.group_by("item_id").agg(pl.col("units").sum(), pl.col("expected_units").sum())
    assert np.corrcoef(per_item["units"], per_item["expected_units"])[0, 1] > 0.9
    # the truth carries the December peak too
    monthly = rates.group_by(pl.col("date").dt.month().alias("m")).agg(pl.col("expected_units").sum())
    m = dict(monthly.iter_rows())
    assert m[12] > 1.5 * np.mean([m[k] for k in range(2, 11)])
    # items are only sold while on sale
    sold = x.filter(pl.col("units") > 0).join(log.items, on="item_id")
    off_sale = sold.filter((pl.col("date") < pl.col("on_sale_from")) | (pl.col("date") > pl.col("on_sale_to")))
    assert off_sale.height == 0 and log.items["on_sale_from"].null_count() < log.items.height


# --------------------------------------------------------------------------- sequences


def test_repeat_share_in_band(log: SynthLog) -> None:
    assert 0.25 <= repeat_share(log.events) <= 0.35
    assert describe(log)["repeat_share"] == round(repeat_share(log.events), 4)


def test_planted_successors_drive_next_purchases(log: SynthLog) -> None:
    seq = _purchases(log).sort("user_id", "ts").select(
        "user_id", "item_id", pl.col("item_id").shift(1).over("user_id").alias("prev"))
    seq = seq.drop_nulls("prev").join(
        log.items.select(pl.col("item_id").alias("prev"), "successor_item_id"), on="prev")
    hit = (seq["item_id"] == seq["successor_item_id"]).mean()
    base = (log.items["popularity"] / log.items["category"].n_unique()).max()  # most any single item gets fresh
    assert hit > 0.15 and hit > 5 * base
    without = generate(TINY.model_copy(update={"successor_prob": 0.0, "repeat_prob": 0.0}))
    seq0 = _purchases(without).sort("user_id", "ts").select(
        "item_id", pl.col("item_id").shift(1).over("user_id").alias("prev")).drop_nulls("prev").join(
        without.items.select(pl.col("item_id").alias("prev"), "successor_item_id"), on="prev")
    assert (seq0["item_id"] == seq0["successor_item_id"]).mean() < hit / 2


def test_collections_share_a_look(log: SynthLog) -> None:
    # items of one collection share colour and motif in their titles (e.g. "... RED HEART ...")
    words = log.items.with_columns(pl.col("title").str.split(" ").alias("w"))
    for coll, group in words.group_by("collection"):
        common = set.intersection(*(set(w) for w in group["w"].to_list()))
        assert len(common) >= 2, (coll, group["title"].to_list())


# --------------------------------------------------------------------------- returns


def test_returns_cancel_an_earlier_purchase_of_the_same_user_and_item(log: SynthLog) -> None:
    truth = log.returns_truth
    assert truth.height > 0
    ret_ev = log.events.filter(pl.col("event") == "return")
    assert ret_ev.height == truth.height
    assert ret_ev.select("order_id", "item_id", "user_id", "quantity").sort("order_id", "item_id").equals(
        truth.select("order_id", "item_id", "user_id", "quantity").sort("order_id", "item_id"))
    buys = _purchases(log).select(pl.col("order_id").alias("purchase_order_id"), "item_id",
                                  pl.col("user_id").alias("buyer"), pl.col("ts").alias("bought"),
                                  pl.col("quantity").alias("bought_q"))
    x = (ret_ev.join(truth.select("order_id", "item_id", "purchase_order_id"), on=["order_id", "item_id"])
         .join(buys, on=["purchase_order_id", "item_id"]))
    assert x.height == truth.height  # every return points at a real purchase line
    assert (x["user_id"] == x["buyer"]).all()
    delay = (x["ts"] - x["bought"]).dt.total_hours()
    assert delay.min() > 0 and delay.max() <= 61 * 24
    assert (x["quantity"] <= x["bought_q"]).all() and (x["quantity"] > 0).all()
    # one return order cancels lines of one purchase order
    assert truth.group_by("order_id").agg(pl.col("purchase_order_id").n_unique())["purchase_order_id"].max() == 1


def test_return_rate_is_realistic_and_higher_for_each_risk_factor(log: SynthLog) -> None:
    rate = describe(log)["return_rate"]
    assert 0.03 <= rate <= 0.08
    prop = log.return_propensity
    assert prop.height == _purchases(log).height
    assert abs(prop["probability"].mean() - log.params.return_rate) < 1e-3
    assert prop["returned"].sum() == log.returns_truth.height
    # observed in the events themselves, not just in the recorded probability
    lines = (_purchases(log).join(log.returns_truth.select(pl.col("purchase_order_id").alias("order_id"),
                                                           "item_id", pl.lit(True).alias("ret")),
                                  on=["order_id", "item_id"], how="left")
             .with_columns(pl.col("ret").fill_null(False)))
    risky_cat = lines.group_by(pl.col("category").is_in(list(RISKY_CATEGORIES)).alias("f")).agg(pl.col("ret").mean())
    risky_country = lines.group_by((pl.col("country") == RISKY_COUNTRY).alias("f")).agg(pl.col("ret").mean())
    for table in (risky_cat, risky_country):
        r = dict(table.iter_rows())
        assert r[True] > 1.5 * r[False]
    for factor in RETURN_FACTORS:
        r = dict(prop.group_by(factor).agg(pl.col("returned").mean()).iter_rows())
        assert r[True] > 1.5 * r[False], factor


def test_knobs_switch_mechanisms_off() -> None:
    quiet = generate(TINY.model_copy(update={"return_rate": 0.0, "browse_rate": 0.0, "wholesale_share": 0.0}))
    kinds = set(quiet.events["event"].cast(pl.String).unique())
    assert kinds <= {"purchase", "view", "cart"} and "return" not in kinds
    assert quiet.returns_truth.height == 0 and not quiet.users["wholesale"].any()
    # browse_rate 0 leaves only the one trace of users who never order
    assert quiet.events.filter(pl.col("event") != "purchase")["user_id"].n_unique() <= quiet.users.height


# --------------------------------------------------------------------------- write, describe


def test_write_round_trips(tmp_path: Path, tiny: SynthLog) -> None:
    out = tmp_path / "synth"
    written = write(tiny, str(out))
    assert set(written) == {"events", "params", *tiny.truth()}
    assert Path(written["events"]) == out / "events.parquet"
    assert pl.read_parquet(out / "events.parquet").equals(tiny.events)
    for name, frame in tiny.truth().items():
        assert pl.read_parquet(out / "truth" / f"{name}.parquet").equals(frame), name
    params = json.loads((out / "params.json").read_text())
    assert params.pop("generator") == "ecomine.datasets.synthetic"
    assert params.pop("generator_version") == synthetic.GENERATOR_VERSION
    assert SynthParams.model_validate(params) == tiny.params
    assert sorted(p.name for p in out.iterdir()) == ["events.parquet", "params.json", "truth"]  # no temp files


def test_describe(tiny: SynthLog) -> None:
    d = describe(tiny)
    assert d["rows"] == tiny.events.height and d["users"] == 200 and d["items"] <= 80
    assert sum(d["events"].values()) == d["rows"]
    assert d["orders"] == _purchases(tiny)["order_id"].n_unique()
    assert d["span"][0].startswith("2023-01") and d["span"][1] < "2023-05-01"
    json.dumps(d)  # plain JSON types
