"""Risk examples: one example per purchase line, its return label and leakage-free history.

Sits after cleaning in the data flow (validate -> clean -> **features** -> splits);
the risk model (`ecomine.models.risk`) and its task train on what `risk_examples`
returns, and serving featurises a request into the same `RISK_FEATURES`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import polars as pl

from ecomine.data._frames import (
    _OKEY,
    _PURCHASE,
    _RETURN,
    _ROW,
    _codes,
    _days,
    _order_key,
    _ratio,
    _require,
)

__all__ = ["risk_examples", "RISK_FEATURES"]

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


def _scan_prior(frame: pl.DataFrame, key: str, values: Sequence[str]) -> pl.DataFrame:
    """Exclusive running sums on a frame sorted by (key, ts).

    For each column v in `values`, ``__prior_v`` = sum of v over the rows with the
    same key and a strictly smaller ts (so rows sharing an instant never see each
    other). Also ``__inst`` / ``__key_start``: row index of the first row of the
    row's instant / key. The key's exclusive running sum, taken at the instant's
    first row.
    """
    idx = pl.int_range(pl.len(), dtype=pl.UInt32)
    new_key = (pl.col(key) != pl.col(key).shift(1)).fill_null(True)
    new_inst = new_key | (pl.col("ts") != pl.col("ts").shift(1)).fill_null(True)
    f = frame.with_columns(
        pl.when(new_inst).then(idx).forward_fill().alias("__inst"),
        pl.when(new_key).then(idx).forward_fill().alias("__key_start"),
        # running sums within each key, not over the whole frame: a sum carried across every earlier key is
        # huge beside one item's, and the difference of two of them kept its rounding, which depended on the
        # keys' (arbitrary, run-dependent) order - two runs on equal input differed in the last bits
        *[(pl.col(v).cum_sum().over(key) - pl.col(v)).alias(f"__excl_{v}") for v in values],
    )
    return f.with_columns(
        pl.col(f"__excl_{v}").gather(pl.col("__inst")).alias(f"__prior_{v}") for v in values
    ).drop(*[f"__excl_{v}" for v in values])


def _unsort(frame: pl.DataFrame) -> pl.DataFrame:
    """Put a permuted frame back in `_ROW` order (row i has `_ROW` == i) by an inverse gather."""
    perm = frame[_ROW].to_numpy()
    inverse = np.empty(len(perm), dtype=np.int64)
    inverse[perm] = np.arange(len(perm))
    return frame[inverse]


def _customer_pass(ev: pl.DataFrame) -> pl.DataFrame:
    """Each events row's customer history before it, in row order: prior lines, returns, quantity and
    orders, the previous order's ts and the customer's first ts. One pass in (user, ts) order; an order
    counts at its first row."""
    return (
        _scan_prior(
            ev.select(_ROW, "__user_id", "ts", _OKEY, "__p", "__r", "quantity")
            .sort("__user_id", "ts", _ROW)  # _ROW: float running sums in one order, run to run
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


def _item_pass(ev: pl.DataFrame) -> pl.DataFrame:
    """Each events row's item history before it, in row order: prior lines, returns and line prices of
    every customer. One pass in (item, ts) order."""
    return _scan_prior(
        ev.select(_ROW, "__item_id", "ts", "__p", "__r", "price")
        .sort("__item_id", "ts", _ROW)
        .with_columns((pl.col("price") * pl.col("__p")).alias("__pr")),
        "__item_id",
        ["__p", "__r", "__pr"],
    ).pipe(_unsort)


def _return_labels(ev: pl.DataFrame, lines: pl.DataFrame, horizon: dt.timedelta) -> tuple[pl.Series, pl.Series]:
    """(each line's next unlinked return ts of the same (user, item) at or after it, by an as-of join;
    the line_ids a return linked to their order hits within the horizon)."""
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
    return nxt, hit_linked


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
        _ROW, "user_id", "item_id", "ts", "order_id", "quantity", "price", linked.alias("linked_order_id"),
        _PURCHASE.cast(pl.Int64).alias("__p"),
        _RETURN.cast(pl.Int64).alias("__r"),
        _order_key(events),
        # integer codes: sorting by them is several times faster than by strings
        # (their order is arbitrary, which the passes below do not depend on)
        _codes("user_id"),
        _codes("item_id"),
    )

    cust, item = _customer_pass(ev), _item_pass(ev)
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
        pl.col("order_id"), "user_id", "item_id", text.alias("item_text"), "ts", *attrs, "quantity", "price",
    )[order].with_columns(pl.Series("line_id", order))
    feats = feats[order]

    nxt, hit_linked = _return_labels(ev, lines, horizon)
    ts = pl.col("ts")
    out = pl.concat([lines, feats.drop(_ROW, "__p"), nxt.to_frame()], how="horizontal")
    return out.select(
        "line_id", "order_id", "user_id", "item_id", "item_text", "ts", *attrs, "quantity", "price",
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
