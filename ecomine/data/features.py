"""Feature builders: cleaned canonical events in, model-ready tables out.

Sits after cleaning in the data flow (validate -> clean -> **features** -> splits);
the recommend, demand and risk models train on what these return. Pure functions
over eager polars DataFrames (no I/O, no Python loop per row or per user).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
import polars as pl

from ecomine.data.schema import EVENT_TYPES

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

# Numeric history features of `risk_examples`, every one computed only from
# events strictly before the line's timestamp. Nullable where undefined (no history).
RISK_FEATURES: tuple[str, ...] = (
    "quantity",
    "price",
    "line_value",
    "cust_prior_orders",
    "cust_prior_lines",
    "cust_prior_returns",
    "cust_prior_return_rate",
    "cust_days_since_prev_order",
    "cust_tenure_days",
    "item_prior_purchases",
    "item_prior_return_rate",
    "qty_rel_cust_mean",
    "price_rel_item_mean",
    "hour",
    "day_of_week",
)

# Calendar covariates `demand_series` adds to every (item, period) row.
DEMAND_COVARIATES: tuple[str, ...] = (
    "day_of_week",
    "is_weekend",
    "week_of_year",
    "month",
    "day_of_year",
    "days_to_christmas",
    "is_uk_holiday",
)

_ROW = "__row"
_OKEY = "__order_key"
_DAY_US = 86_400_000_000.0  # microseconds in a day
_PURCHASE = pl.col("event") == "purchase"
_RETURN = pl.col("event") == "return"


# --------------------------------------------------------------------------- helpers


def _require(events: pl.DataFrame, columns: Iterable[str], where: str) -> None:
    missing = [c for c in columns if c not in events.columns]
    if missing:
        raise ValueError(
            f"{where}: events frame lacks column(s) {missing}; it has {events.columns}"
        )


def _check_events(kinds: Sequence[str], where: str) -> None:
    bad = [k for k in kinds if k not in EVENT_TYPES]
    if bad:
        raise ValueError(f"{where}: event={bad!r} is not one of {list(EVENT_TYPES)}")


def _instant(value: dt.datetime | dt.date, dtype: pl.DataType, where: str) -> pl.Expr:
    """A literal comparable with a column of `dtype`.

    Naive datetimes are read as UTC against a tz-aware column; aware ones are
    converted. A date means its midnight (UTC). Against a Date column, the date.
    """
    if isinstance(value, dt.datetime):
        v = value
    elif isinstance(value, dt.date):
        v = dt.datetime.combine(value, dt.time())
    else:
        raise TypeError(f"{where}: expected a datetime or date, got {value!r}")
    if dtype == pl.Date:
        return pl.lit(v.date(), dtype=pl.Date)
    if not isinstance(dtype, pl.Datetime):
        raise TypeError(f"{where}: column dtype {dtype} is not a date/datetime")
    if dtype.time_zone is None:
        if v.tzinfo is not None:
            v = v.astimezone(dt.timezone.utc).replace(tzinfo=None)
    elif v.tzinfo is None:
        v = v.replace(tzinfo=dt.timezone.utc)
    return pl.lit(v).cast(dtype)


def _days(expr: pl.Expr) -> pl.Expr:
    """A Duration expression in (fractional) days."""
    return expr.dt.total_microseconds() / _DAY_US


def _order_key(events: pl.DataFrame) -> pl.Expr:
    """order_id, or a per-row key where it is null (such a row is its own order).

    Needs the `_ROW` index column on the frame it is evaluated on.
    """
    if events["order_id"].null_count() == 0:
        return pl.col("order_id").alias(_OKEY)
    return pl.coalesce(
        pl.col("order_id"), pl.lit("\x00row") + pl.col(_ROW).cast(pl.String)
    ).alias(_OKEY)


def _codes(col: str) -> pl.Expr:
    """Integer codes of a string column (``__<col>``), for fast sorting and grouping.

    Their order is arbitrary (not lexical): use them only where order within a
    group matters, never the order of the groups.
    """
    return pl.col(col).cast(pl.Categorical).to_physical().alias(f"__{col}")


def _mode_by(frame: pl.DataFrame, by: str, col: str) -> pl.DataFrame:
    """Most frequent non-null `col` per `by` (ties: smallest value). Columns [by, col]."""
    return (
        frame.filter(pl.col(col).is_not_null())
        .group_by(by, col)
        .agg(pl.len().alias("__n"))
        .sort([by, "__n", col], descending=[False, True, False])
        .unique(subset=by, keep="first", maintain_order=True)
        .select(by, col)
    )


def _ratio(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    """num / den as float, null where den is 0 or null."""
    return pl.when(den > 0).then(num.cast(pl.Float64) / den).otherwise(None)


def _easter(year: int) -> dt.date:
    # Anonymous Gregorian algorithm (Meeus/Jones/Butcher).
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    g = (b - (b + 8) // 25 + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l_) // 451
    month, day = divmod(h + l_ - 7 * m + 114, 31)
    return dt.date(year, month, day + 1)


def _observed(days: list[dt.date]) -> list[dt.date]:
    """Move weekend holidays to the next weekday not already a holiday."""
    taken = {d for d in days if d.weekday() < 5}
    out = sorted(taken)
    for d in sorted(x for x in days if x.weekday() >= 5):
        s = d
        while s.weekday() >= 5 or s in taken:
            s += dt.timedelta(days=1)
        taken.add(s)
        out.append(s)
    return sorted(out)


def _first_monday(year: int, month: int) -> dt.date:
    d = dt.date(year, month, 1)
    return d + dt.timedelta(days=(7 - d.weekday()) % 7)


def _last_monday(year: int, month: int) -> dt.date:
    d = dt.date(year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1)
    return d - dt.timedelta(days=d.weekday())


# One-off changes to the England & Wales calendar (moved or extra days).
_MOVED = {
    dt.date(2012, 5, 28): dt.date(2012, 6, 4),  # Spring holiday -> Diamond Jubilee weekend
    dt.date(2020, 5, 4): dt.date(2020, 5, 8),  # Early May -> VE Day 75
    dt.date(2022, 5, 30): dt.date(2022, 6, 2),  # Spring holiday -> Platinum Jubilee
}
_EXTRA = (
    dt.date(2011, 4, 29),  # Royal wedding
    dt.date(2012, 6, 5),  # Diamond Jubilee
    dt.date(2022, 6, 3),  # Platinum Jubilee
    dt.date(2022, 9, 19),  # State funeral of Queen Elizabeth II
    dt.date(2023, 5, 8),  # Coronation of King Charles III
)


def uk_bank_holidays(start_year: int = 2009, end_year: int = 2027) -> list[dt.date]:
    """England & Wales bank holidays, computed from the statutory rules.

    Rules (New Year, Good Friday, Easter Monday, early-May, spring, summer,
    Christmas, Boxing Day, with weekend substitutes) hold for any year; the
    one-off moves and extra days (jubilees, royal events) are hard-coded and
    known for 2009-2027 only.
    """
    out: list[dt.date] = []
    for y in range(start_year, end_year + 1):
        easter = _easter(y)
        fixed = [
            easter - dt.timedelta(days=2),
            easter + dt.timedelta(days=1),
            _first_monday(y, 5),
            _last_monday(y, 5),
            _last_monday(y, 8),
        ]
        days = _observed([dt.date(y, 1, 1)]) + fixed + _observed(
            [dt.date(y, 12, 25), dt.date(y, 12, 26)]
        )
        days = [_MOVED.get(d, d) for d in days] + [d for d in _EXTRA if d.year == y]
        out.extend(days)
    return sorted(set(out))


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
        "user_id",
        "recency_days",
        "frequency",
        "monetary",
        "net_monetary",
        "n_lines",
        "n_items",
        "avg_basket_size",
        "avg_basket_value",
        "n_returns",
        "return_rate",
        "tenure_days",
        "fav_hour",
        "fav_dow",
        *attrs,
    ).sort("user_id")


# ------------------------------------------------------------------------ demand


def _as_date(value: dt.date | dt.datetime, where: str) -> dt.date:
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc)
        return value.date()
    if isinstance(value, dt.date):
        return value
    raise TypeError(f"{where}: expected a date or datetime, got {value!r}")


def _calendar(dates: pl.DataFrame, freq: str) -> pl.DataFrame:
    d = pl.col("date")
    xmas = pl.date(d.dt.year(), 12, 25)
    next_xmas = pl.when(d <= xmas).then(xmas).otherwise(pl.date(d.dt.year() + 1, 12, 25))
    hol = uk_bank_holidays()
    if freq == "1w":
        hol_s = pl.Series(hol, dtype=pl.Date).dt.truncate("1w").unique()
    else:
        hol_s = pl.Series(hol, dtype=pl.Date)
    return dates.with_columns(
        d.dt.weekday().alias("day_of_week"),
        (d.dt.weekday() >= 6).alias("is_weekend"),
        d.dt.week().alias("week_of_year"),
        d.dt.month().alias("month"),
        d.dt.ordinal_day().alias("day_of_year"),
        (next_xmas - d).dt.total_days().cast(pl.Int32).alias("days_to_christmas"),
        d.is_in(hol_s.implode()).alias("is_uk_holiday"),
    )


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
        return _calendar(pl.DataFrame(schema=out_schema), freq)
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
    cal = _calendar(dates, freq)
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


# -------------------------------------------------------------------------- risk


def _scan_prior(frame: pl.DataFrame, key: str, values: Sequence[str]) -> pl.DataFrame:
    """Exclusive running sums on a frame sorted by (key, ts).

    For each column v in `values`, ``__prior_v`` = sum of v over the rows with the
    same key and a strictly smaller ts (so rows sharing an instant never see each
    other). Also ``__inst`` / ``__key_start``: row index of the first row of the
    row's instant / key. One pass, no group-by: the inclusive running sum taken
    at the instant's first row minus the one at the key's first row.
    """
    idx = pl.int_range(pl.len(), dtype=pl.UInt32)
    new_key = (pl.col(key) != pl.col(key).shift(1)).fill_null(True)
    new_inst = new_key | (pl.col("ts") != pl.col("ts").shift(1)).fill_null(True)
    f = frame.with_columns(
        pl.when(new_inst).then(idx).forward_fill().alias("__inst"),
        pl.when(new_key).then(idx).forward_fill().alias("__key_start"),
        *[(pl.col(v).cum_sum() - pl.col(v)).alias(f"__excl_{v}") for v in values],
    )
    return f.with_columns(
        (
            pl.col(f"__excl_{v}").gather(pl.col("__inst"))
            - pl.col(f"__excl_{v}").gather(pl.col("__key_start"))
        ).alias(f"__prior_{v}")
        for v in values
    ).drop(*[f"__excl_{v}" for v in values])


def _unsort(frame: pl.DataFrame) -> pl.DataFrame:
    """Put a permuted frame back in `_ROW` order (row i has `_ROW` == i) by an inverse gather."""
    perm = frame[_ROW].to_numpy()
    inverse = np.empty(len(perm), dtype=np.int64)
    inverse[perm] = np.arange(len(perm))
    return frame[inverse]


def risk_examples(events: pl.DataFrame, *, horizon_days: int = 60) -> pl.DataFrame:
    """One example per purchase line: its return label and leakage-free history.

    Label ``returned`` (i8, 1/0): the same user has a ``return`` event for the same
    item with ts in [line ts, line ts + horizon_days] (both inclusive). A return
    whose ``linked_order_id`` is set counts only for lines of that order; one
    without counts for any of the user's purchases of the item in the window.
    ``label_closed_at`` = ts + horizon: trust a label only when it is at or before
    your cut-off (see splits.temporal_split(label_closed_col=...)).

    History features (`RISK_FEATURES`) use only events with ts strictly before the
    line's ts (lines of the same order never see each other); undefined ratios
    (no history) are null:
    ``cust_prior_orders``, ``cust_prior_lines`` (purchase lines), ``cust_prior_returns``,
    ``cust_prior_return_rate`` (= returns / lines), ``cust_days_since_prev_order``,
    ``cust_tenure_days`` (since the customer's first event of any kind; 0 when
    none before), ``item_prior_purchases`` (lines, all customers),
    ``item_prior_return_rate``, ``qty_rel_cust_mean`` (quantity / customer's prior
    mean line quantity), ``price_rel_item_mean`` (price / item's prior mean line
    price), ``hour`` and ``day_of_week`` (1=Mon) of ts.

    Also carried: ``line_id`` (u32 row index of the line in `events`), order_id,
    user_id, item_id, item_text, ts, quantity, price, line_value, and ``country``
    when present. Sorted by (ts, line_id).
    """
    where = "risk_examples"
    _require(
        events, ("user_id", "item_id", "ts", "event", "quantity", "price", "order_id"), where
    )
    if horizon_days < 0:
        raise ValueError(f"{where}: horizon_days={horizon_days} must be >= 0")
    horizon = dt.timedelta(days=horizon_days)
    attrs = [c for c in ("country",) if c in events.columns]
    text = pl.col("item_text") if "item_text" in events.columns else pl.lit(None, pl.String)
    linked = (
        pl.col("linked_order_id") if "linked_order_id" in events.columns else pl.lit(None, pl.String)
    )
    ev = events.with_row_index(_ROW).select(
        _ROW,
        "user_id",
        "item_id",
        "ts",
        "order_id",
        "quantity",
        "price",
        linked.alias("linked_order_id"),
        _PURCHASE.cast(pl.Int64).alias("__p"),
        _RETURN.cast(pl.Int64).alias("__r"),
        _order_key(events),
        # integer codes: sorting by them is several times faster than by strings
        # (their order is arbitrary, which the passes below do not depend on)
        _codes("user_id"),
        _codes("item_id"),
    )

    # -- customer history, in (user, ts) order; orders count at their first row
    cust = (
        _scan_prior(
            ev.select(_ROW, "__user_id", "ts", _OKEY, "__p", "__r", "quantity")
            .sort("__user_id", "ts")
            .with_columns(
                (pl.col("quantity") * pl.col("__p")).alias("__q"),
                (pl.col("__p") * pl.struct("__user_id", _OKEY).is_first_distinct()).alias("__o"),
            ),
            "__user_id",
            ["__p", "__r", "__q", "__o"],
        )
        .with_columns(
            # latest purchase ts up to this row, within the user
            pl.when(
                pl.when(pl.col("__p") == 1).then(pl.col("__user_id")).forward_fill()
                == pl.col("__user_id")
            )
            .then(pl.when(pl.col("__p") == 1).then(pl.col("ts")).forward_fill())
            .alias("__last_p")
        )
        .with_columns(
            # ... as of the row just before this instant, when it is the same user's
            pl.when(pl.col("__inst") > pl.col("__key_start"))
            .then(pl.col("__last_p").gather((pl.col("__inst").cast(pl.Int64) - 1).clip(0)))
            .alias("__prev_order_ts"),
            pl.col("ts").gather(pl.col("__key_start")).alias("__first_ts"),
        )
        .pipe(_unsort)
    )
    # -- item history, in (item, ts) order
    item = _scan_prior(
        ev.select(_ROW, "__item_id", "ts", "__p", "__r", "price")
        .sort("__item_id", "ts")
        .with_columns((pl.col("price") * pl.col("__p")).alias("__pr")),
        "__item_id",
        ["__p", "__r", "__pr"],
    ).pipe(_unsort)
    feats = pl.concat(
        [
            ev.select(_ROW, "__p"),
            cust.select(
                pl.col("__prior___p").alias("__c_lines"),
                pl.col("__prior___r").alias("__c_returns"),
                pl.col("__prior___q").alias("__c_qty"),
                pl.col("__prior___o").alias("__c_orders"),
                "__prev_order_ts",
                "__first_ts",
            ),
            item.select(
                pl.col("__prior___p").alias("__i_lines"),
                pl.col("__prior___r").alias("__i_returns"),
                pl.col("__prior___pr").alias("__i_price"),
            ),
        ],
        how="horizontal",
    )  # row i describes events row i (both passes were put back in row order)

    # -- purchase lines in (ts, row) order
    order = ev.filter(pl.col("__p") == 1).select(_ROW, "ts").sort("ts", _ROW)[_ROW]
    lines = events.select(
        pl.col("order_id"),
        "user_id",
        "item_id",
        text.alias("item_text"),
        "ts",
        *attrs,
        "quantity",
        "price",
    )[order].with_columns(pl.Series("line_id", order))
    feats = feats[order]

    # -- label: the next unlinked return of (user, item) at/after ts, by an as-of join
    rets = ev.filter(pl.col("__r") == 1).select(
        "user_id", "item_id", pl.col("ts").alias("__r_ts"), "linked_order_id"
    )
    unlinked = rets.filter(pl.col("linked_order_id").is_null()).drop("linked_order_id").sort("__r_ts")
    nxt = lines.select("user_id", "item_id", "ts").join_asof(
        unlinked,
        left_on="ts",
        right_on="__r_ts",
        by=["user_id", "item_id"],
        strategy="forward",
        check_sortedness=False,
    )["__r_ts"]
    hit_linked = (
        lines.select("line_id", "user_id", "item_id", "order_id", "ts")
        .join(
            rets.filter(pl.col("linked_order_id").is_not_null()),
            left_on=["user_id", "item_id", "order_id"],
            right_on=["user_id", "item_id", "linked_order_id"],
        )
        .filter(pl.col("__r_ts").is_between(pl.col("ts"), pl.col("ts") + horizon))["line_id"]
    )
    ts = pl.col("ts")
    out = pl.concat([lines, feats.drop(_ROW, "__p"), nxt.to_frame()], how="horizontal")
    return out.select(
        "line_id",
        "order_id",
        "user_id",
        "item_id",
        "item_text",
        "ts",
        *attrs,
        "quantity",
        "price",
        (pl.col("quantity") * pl.col("price")).alias("line_value"),
        pl.col("__c_orders").alias("cust_prior_orders"),
        pl.col("__c_lines").alias("cust_prior_lines"),
        pl.col("__c_returns").alias("cust_prior_returns"),
        _ratio(pl.col("__c_returns"), pl.col("__c_lines")).alias("cust_prior_return_rate"),
        _days(ts - pl.col("__prev_order_ts")).alias("cust_days_since_prev_order"),
        _days(ts - pl.col("__first_ts")).alias("cust_tenure_days"),
        pl.col("__i_lines").alias("item_prior_purchases"),
        _ratio(pl.col("__i_returns"), pl.col("__i_lines")).alias("item_prior_return_rate"),
        _ratio(pl.col("quantity") * pl.col("__c_lines"), pl.col("__c_qty")).alias("qty_rel_cust_mean"),
        _ratio(pl.col("price") * pl.col("__i_lines"), pl.col("__i_price")).alias("price_rel_item_mean"),
        ts.dt.hour().alias("hour"),
        ts.dt.weekday().alias("day_of_week"),
        (
            (pl.col("__r_ts") <= ts + horizon).fill_null(False)
            | pl.col("line_id").is_in(hit_linked.implode())
        ).cast(pl.Int8).alias("returned"),
        (ts + horizon).alias("label_closed_at"),
    )


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
        "item_id",
        "item_text",
        *attrs,
        "n_purchases",
        "units_sold",
        "first_seen",
        "last_seen",
        "median_price",
    ).sort("item_id")
