"""Feature builders: cleaned canonical events in, model-ready tables out.

Sits after cleaning in the data flow (validate -> clean -> **features** -> splits);
the recommend, demand and risk models train on what these return. Pure functions
over eager polars DataFrames (no I/O, no Python loop per row or per user).
Here: user sequences, RFM and the item catalogue; the demand series
(`demand_series`), the risk examples (`risk_examples`) and the calendar
(`calendar`) have modules of their own and are re-exported from here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

from ecomine.data._frames import (
    _OKEY,
    _PURCHASE,
    _RETURN,
    _ROW,
    _check_events,
    _codes,
    _days,
    _instant,
    _mode_by,
    _order_key,
    _ratio,
    _require,
)
from ecomine.data.calendar import DEMAND_COVARIATES, uk_bank_holidays
from ecomine.data.demand_series import demand_series
from ecomine.data.risk_examples import RISK_FEATURES, risk_examples

__all__ = [
    "user_sequences",
    "rfm_features",
    "demand_series",
    "risk_examples",
    "item_catalogue",
    "uk_bank_holidays",
    "RISK_FEATURES",
    "DEMAND_COVARIATES",
]


# --------------------------------------------------------------------- sequences


def user_sequences(
    events: pl.DataFrame,
    *,
    event: str | Sequence[str] = "purchase",
    dedupe_consecutive: bool = True,
    min_len: int = 1,
) -> pl.DataFrame:
    """Each user's chronological item sequence.

    Returns columns ``user_id: str, items: list[str], ts: list[datetime], n: i64``,
    one row per user with at least `min_len` entries, sorted by user_id.
    Order: ts, then order_id (nulls last), then row order in `events`. One entry
    per (order, item) — several lines of one item in one order collapse to the
    first; a row with a null order_id is its own order. With `dedupe_consecutive`,
    an item repeated back-to-back (across orders) keeps only its first entry.
    """
    _require(events, ("user_id", "item_id", "ts", "event", "order_id"), "user_sequences")
    kinds = [event] if isinstance(event, str) else list(event)
    _check_events(kinds, "user_sequences")
    df = (
        events.select("user_id", "item_id", "ts", "event", "order_id")
        .with_row_index(_ROW)
        .filter(pl.col("event").is_in(kinds))
        .with_columns(_order_key(events), _codes("user_id"))
        # chronological, then a stable sort on the user's integer code: users'
        # rows contiguous, in (ts, order_id, row) order within each user
        .sort("ts", "order_id", _ROW, nulls_last=True)
        .sort("__user_id", maintain_order=True)
        .filter(pl.struct("__user_id", _OKEY, "item_id").is_first_distinct())
    )
    if dedupe_consecutive:
        same = (pl.col("item_id") == pl.col("item_id").shift(1)) & (
            pl.col("__user_id") == pl.col("__user_id").shift(1)
        )
        df = df.filter(~same.fill_null(False))
    return (
        df.group_by("__user_id", maintain_order=True)
        .agg(
            pl.col("user_id").first(),
            pl.col("item_id").alias("items"),
            pl.col("ts"),
            pl.len().cast(pl.Int64).alias("n"),
        )
        .filter(pl.col("n") >= min_len)
        .drop("__user_id")
        .sort("user_id")
    )


# --------------------------------------------------------------------------- RFM


def rfm_features(
    events: pl.DataFrame,
    *,
    as_of: dt.datetime | dt.date | None = None,
    user_attributes: Sequence[str] = ("country",),
) -> pl.DataFrame:
    """Recency / frequency / monetary and behaviour features, one row per user.

    Only events strictly before `as_of` count; the reference time is `as_of`, or the
    latest event timestamp when None. Every user with any event before it gets a row
    (sorted by user_id). Columns:

    - ``recency_days`` f64: reference - last purchase (null: never purchased)
    - ``frequency`` i64: distinct purchase orders
    - ``monetary`` f64: sum of quantity*price over purchases (gross)
    - ``net_monetary`` f64: monetary minus the value of returns
    - ``n_lines`` i64 purchase lines, ``n_items`` i64 distinct items purchased
    - ``avg_basket_size`` f64: purchase lines per order; ``avg_basket_value`` f64
    - ``n_returns`` i64 return events; ``return_rate`` f64 = n_returns / n_lines
      (null without purchases; may exceed 1 when returns cancel older purchases)
    - ``tenure_days`` f64: reference - the user's first event of any kind
    - ``fav_hour`` i8 (0-23), ``fav_dow`` i8 (1=Mon..7=Sun): most frequent over
      purchase orders, ties to the smaller value
    - each of `user_attributes` present in `events` (e.g. ``country``): its most
      frequent non-null value (ties: smallest).
    """
    _require(
        events, ("user_id", "item_id", "ts", "event", "quantity", "price", "order_id"), "rfm_features"
    )
    df = events.with_row_index(_ROW)
    if as_of is not None:
        df = df.filter(pl.col("ts") < _instant(as_of, events.schema["ts"], "rfm_features(as_of)"))
    ref = (
        _instant(as_of, events.schema["ts"], "rfm_features(as_of)")
        if as_of is not None
        else pl.lit(df["ts"].max(), dtype=events.schema["ts"])
    )
    value = pl.col("quantity") * pl.col("price")
    users = df.group_by("user_id").agg(
        pl.col("ts").min().alias("__first"),
        _RETURN.sum().cast(pl.Int64).alias("n_returns"),
        value.filter(_RETURN).sum().alias("__returned_value"),
    )
    purch = df.filter(_PURCHASE).with_columns(_order_key(events))
    orders = purch.group_by("user_id", _OKEY).agg(
        pl.col("ts").min(), pl.len().alias("__lines"), value.sum().alias("__value")
    )
    per_order = orders.group_by("user_id").agg(
        pl.len().cast(pl.Int64).alias("frequency"),
        pl.col("ts").max().alias("__last"),
        pl.col("__lines").mean().alias("avg_basket_size"),
        pl.col("__value").mean().alias("avg_basket_value"),
    )
    per_line = purch.group_by("user_id").agg(
        value.sum().alias("monetary"),
        pl.len().cast(pl.Int64).alias("n_lines"),
        pl.col("item_id").n_unique().cast(pl.Int64).alias("n_items"),
    )
    timing = orders.with_columns(
        pl.col("ts").dt.hour().alias("fav_hour"), pl.col("ts").dt.weekday().alias("fav_dow")
    )
    out = (
        users.join(per_order, on="user_id", how="left")
        .join(per_line, on="user_id", how="left")
        .join(_mode_by(timing, "user_id", "fav_hour"), on="user_id", how="left")
        .join(_mode_by(timing, "user_id", "fav_dow"), on="user_id", how="left")
        .with_columns(pl.col("frequency", "n_lines", "n_items").fill_null(0))
        .with_columns(pl.col("monetary").fill_null(0.0))
        .with_columns(
            _days(ref - pl.col("__last")).alias("recency_days"),
            (pl.col("monetary") - pl.col("__returned_value")).alias("net_monetary"),
            _ratio(pl.col("n_returns"), pl.col("n_lines")).alias("return_rate"),
            _days(ref - pl.col("__first")).alias("tenure_days"),
        )
    )
    attrs = [c for c in user_attributes if c in events.columns]
    for a in attrs:
        out = out.join(_mode_by(df, "user_id", a), on="user_id", how="left")
    return out.select(
        "user_id", "recency_days", "frequency", "monetary", "net_monetary", "n_lines", "n_items",
        "avg_basket_size", "avg_basket_value", "n_returns", "return_rate", "tenure_days", "fav_hour", "fav_dow",
        *attrs,
    ).sort("user_id")



# --------------------------------------------------------------------- catalogue


def item_catalogue(
    events: pl.DataFrame, *, item_attributes: Sequence[str] = ("category",)
) -> pl.DataFrame:
    """One row per item seen in `events`, sorted by item_id.

    Columns: ``item_id``, ``item_text`` (most frequent non-null text; ties: smallest),
    each of `item_attributes` present in `events` (most frequent non-null value),
    ``n_purchases`` i64 (purchase lines), ``units_sold`` i64, ``first_seen`` /
    ``last_seen`` (any event), ``median_price`` f64 (of purchase lines; of all its
    events when it was never purchased).
    """
    _require(events, ("item_id", "ts", "event", "quantity", "price"), "item_catalogue")
    stats = events.group_by("item_id").agg(
        _PURCHASE.sum().cast(pl.Int64).alias("n_purchases"),
        pl.col("quantity").filter(_PURCHASE).sum().cast(pl.Int64).alias("units_sold"),
        pl.col("ts").min().alias("first_seen"),
        pl.col("ts").max().alias("last_seen"),
        pl.coalesce(pl.col("price").filter(_PURCHASE).median(), pl.col("price").median()).alias(
            "median_price"
        ),
    )
    attrs = [c for c in item_attributes if c in events.columns]
    if "item_text" in events.columns:
        stats = stats.join(_mode_by(events, "item_id", "item_text"), on="item_id", how="left")
    else:
        stats = stats.with_columns(pl.lit(None, pl.String).alias("item_text"))
    for a in attrs:
        stats = stats.join(_mode_by(events, "item_id", a), on="item_id", how="left")
    return stats.select(
        "item_id", "item_text", *attrs, "n_purchases", "units_sold", "first_seen", "last_seen", "median_price"
    ).sort("item_id")
