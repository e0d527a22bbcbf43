"""Demand series: units per item per day or week, zero-filled, with price and calendar covariates.

Sits after cleaning in the data flow (validate -> clean -> **features** -> splits);
the demand task (`ecomine.train.demand_task`) trains on what `demand_series` returns.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Literal

import numpy as np
import polars as pl

from ecomine.data._frames import _OKEY, _PURCHASE, _RETURN, _ROW, _ratio, _require, _order_key
from ecomine.data.calendar import DEMAND_COVARIATES, calendar_covariates

__all__ = ["demand_series"]


def _as_date(value: dt.date | dt.datetime, where: str) -> dt.date:
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc)
        return value.date()
    if isinstance(value, dt.date):
        return value
    raise TypeError(f"{where}: expected a date or datetime, got {value!r}")



def demand_series(
    events: pl.DataFrame,
    *,
    freq: Literal["1d", "1w"] = "1d",
    items: Sequence[str] | pl.Series | None = None,
    start: dt.date | dt.datetime | None = None,
    end: dt.date | dt.datetime | None = None,
    net: bool = False,
) -> pl.DataFrame:
    """Units per item per period, zero-filled, with price and calendar covariates.

    One row for every item x every period in [start, end] (both inclusive; default
    the span of the counted events), sorted by (item_id, date). Periods are UTC
    days (``freq="1d"``) or ISO weeks starting Monday (``"1w"``, `date` = Monday).
    `items` default: every item with a counted event anywhere in `events` (also
    outside the window); listed items absent from the data get all-zero rows.
    Columns:

    - ``item_id`` str, ``date`` Date (period start)
    - ``units`` i64: purchased quantity (gross), or purchased minus returned
      quantity when `net` (may then be negative)
    - ``avg_price`` f64: revenue / purchased units of the period; carried forward
      when nothing sold; before an item's first sale in the window it takes the
      item's last price before `start`, else (leading gap) its first price in the
      window — null only for an item never purchased
    - ``n_orders`` i64 distinct purchase orders, ``revenue`` f64
    - calendar covariates of the period start (`DEMAND_COVARIATES`): day_of_week
      (1=Mon), is_weekend, week_of_year (ISO), month, day_of_year,
      days_to_christmas (to the next Dec 25, 0 on the day), is_uk_holiday (England
      & Wales bank holidays from `uk_bank_holidays`; weekly: any in the week).

    ~120 lines: one polars pipeline (aggregate, zero-fill, then one expression per covariate the docstring
    lists).
    """
    where = "demand_series"
    _require(events, ("item_id", "ts", "event", "quantity", "price", "order_id"), where)
    if freq not in ("1d", "1w"):
        raise ValueError(f"{where}: freq={freq!r} must be '1d' or '1w'")
    kinds = ["purchase", "return"] if net else ["purchase"]
    period = pl.col("ts").dt.date()
    if freq == "1w":
        period = period.dt.truncate("1w")
    ev = (
        events.select("item_id", "ts", "event", "quantity", "price", "order_id")
        .with_row_index(_ROW)
        .filter(pl.col("event").is_in(kinds))
        .with_columns(period.alias("date"), _order_key(events))
    )

    def _snap(d: dt.date) -> dt.date:
        return d - dt.timedelta(days=d.weekday()) if freq == "1w" else d

    lo = _snap(_as_date(start, f"{where}(start)")) if start is not None else ev["date"].min()
    hi = _snap(_as_date(end, f"{where}(end)")) if end is not None else ev["date"].max()
    if items is None:
        item_s = ev["item_id"].unique().sort()
    else:
        item_s = pl.Series("item_id", list(items), dtype=pl.String).unique().sort()
    out_schema = {
        "item_id": pl.String,
        "date": pl.Date,
        "units": pl.Int64,
        "avg_price": pl.Float64,
        "n_orders": pl.Int64,
        "revenue": pl.Float64,
    }
    if lo is None or hi is None or item_s.len() == 0:
        return calendar_covariates(pl.DataFrame(schema=out_schema), freq)
    if lo > hi:
        raise ValueError(f"{where}: start={lo} is after end={hi}")
    dates = pl.DataFrame({"date": pl.date_range(lo, hi, freq, eager=True)})
    n_items, n_dates = item_s.len(), dates.height
    size = n_items * n_dates
    step = 7 if freq == "1w" else 1
    # Accumulate straight into an item-major (n_items x n_dates) grid, cell =
    # item_index * n_dates + period_index: no group-by or join over millions of rows.
    ev = ev.with_columns(
        pl.col("item_id")
        .replace_strict(item_s, pl.int_range(0, n_items, eager=True), default=None)
        .alias("__i")
    ).filter(pl.col("__i").is_not_null())
    win = ev.filter(pl.col("date").is_between(lo, hi)).with_columns(
        (
            pl.col("__i").cast(pl.Int64) * n_dates
            + (pl.col("date") - lo).dt.total_days() // step
        ).alias("__cell")
    )
    bought = win.filter(_PURCHASE)
    cell = bought["__cell"].to_numpy()
    qty = bought["quantity"].to_numpy()
    units_sold = np.bincount(cell, weights=qty, minlength=size)
    revenue = np.bincount(cell, weights=qty * bought["price"].to_numpy(), minlength=size)
    units = units_sold.round().astype(np.int64)
    if net:
        back = win.filter(_RETURN)
        units -= np.bincount(
            back["__cell"].to_numpy(), weights=back["quantity"].to_numpy(), minlength=size
        ).round().astype(np.int64)
    n_orders = np.bincount(
        bought.select("__cell", _OKEY).unique()["__cell"].to_numpy(), minlength=size
    ).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        price = np.where(units_sold > 0, revenue / units_sold, np.nan)
    # seed: each item's average price in its last period with sales before the window
    seed = np.full(n_items, np.nan)
    before = (
        ev.filter(_PURCHASE, pl.col("date") < lo)
        .filter(pl.col("date") == pl.col("date").max().over("__i"))
        .group_by("__i")
        .agg(_ratio((pl.col("quantity") * pl.col("price")).sum(), pl.col("quantity").sum()).alias("p"))
        .drop_nulls()
    )
    seed[before["__i"].to_numpy()] = before["p"].to_numpy()
    grid_price = _fill_prices(price.reshape(n_items, n_dates), seed).reshape(-1)
    cal = calendar_covariates(dates, freq)
    return pl.DataFrame(
        {
            "item_id": item_s.gather(np.repeat(np.arange(n_items), n_dates)),
            **{c: np.tile(cal[c].to_numpy(), n_items) for c in ("date", *DEMAND_COVARIATES)},
            "units": units,
            "avg_price": pl.Series(grid_price).fill_nan(None),
            "n_orders": n_orders,
            "revenue": revenue,
        }
    ).select(*out_schema, *DEMAND_COVARIATES)


def _fill_prices(price: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Per row of an (items x periods) array: forward-fill NaNs; a leading gap takes
    the row's seed, else the row's first observed value."""
    n_rows, n_cols = price.shape
    seen = ~np.isnan(price)
    last = np.where(seen, np.arange(n_cols), 0)
    np.maximum.accumulate(last, axis=1, out=last)
    last += (np.arange(n_rows) * n_cols)[:, None]
    out = price.reshape(-1)[last.reshape(-1)].reshape(n_rows, n_cols)
    lead = np.isnan(out)
    if lead.any():
        first = seen.argmax(axis=1)
        first_price = np.where(seen.any(axis=1), price[np.arange(n_rows), first], np.nan)
        fill = np.where(np.isnan(seed), first_price, seed)
        out = np.where(lead, fill[:, None], out)
    return out
