"""Polars helpers the feature builders share: column checks, instants, order keys, codes, ratios.

Private to `ecomine.data` (features, demand_series, risk_examples, text, splits):
expressions over canonical events, no I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import polars as pl

from ecomine.data.schema import EVENT_TYPES

_ROW = "__row"
_OKEY = "__order_key"
_DAY_US = 86_400_000_000.0  # microseconds in a day
_PURCHASE = pl.col("event") == "purchase"
_RETURN = pl.col("event") == "return"


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
