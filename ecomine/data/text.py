"""Text serialisations of users and order lines, for language-model inputs.

Sits beside ecomine.data.features (events -> features -> **text** -> models): the
recommend model reads `user_behaviour_text`, the risk model `order_line_text` over
rows of `features.risk_examples`. Deterministic, pure polars expressions, no I/O.
"""

from __future__ import annotations

import datetime as dt
import polars as pl

from ecomine.data._frames import (
    _OKEY,
    _ROW,
    _codes,
    _days,
    _instant,
    _mode_by,
    _order_key,
    _require,
)

__all__ = ["user_behaviour_text", "order_line_text"]

_VERBS = {
    "purchase": "bought",
    "return": "returned",
    "cart": "added to cart",
    "view": "viewed",
    "click": "clicked",
    "review": "reviewed",
}


def _fixed(expr: pl.Expr, decimals: int = 2) -> pl.Expr:
    """Format a numeric expression with exactly `decimals` decimals ("2.50", "-0.05").

    Null stays null. Rounds half away from zero.
    """
    scale = 10**decimals
    scaled = (expr.abs() * scale).round(0, mode="half_away_from_zero").cast(pl.Int64)
    sign = pl.when((expr < 0) & (scaled > 0)).then(pl.lit("-")).otherwise(pl.lit(""))
    whole = (scaled // scale).cast(pl.String)
    if decimals == 0:
        return pl.concat_str(sign, whole)
    frac = (scaled % scale).cast(pl.String).str.zfill(decimals)
    return pl.concat_str(sign, whole, pl.lit("."), frac)


def _clean(expr: pl.Expr) -> pl.Expr:
    """Trim and collapse whitespace (source descriptions carry stray spaces)."""
    return expr.str.replace_all(r"\s+", " ").str.strip_chars()


def _ago(days: pl.Expr) -> pl.Expr:
    d = days.floor().cast(pl.Int64)
    return (
        pl.when(d <= 0)
        .then(pl.lit("today"))
        .when(d == 1)
        .then(pl.lit("1 day ago"))
        .otherwise(pl.concat_str(d.cast(pl.String), pl.lit(" days ago")))
    )


def _plural(n: pl.Expr, word: str) -> pl.Expr:
    return pl.concat_str(
        n.cast(pl.String),
        pl.lit(" "),
        pl.when(n == 1).then(pl.lit(word)).otherwise(pl.lit(word + "s")),
    )


def user_behaviour_text(
    events: pl.DataFrame,
    *,
    as_of: dt.datetime | dt.date | None = None,
    max_events: int = 20,
    catalogue: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One line of text per user summarising their behaviour before `as_of`.

    Returns ``[user_id: str, text: str]`` sorted by user_id, for every user with an
    event strictly before `as_of` (reference time: `as_of`, or the latest event).
    Shape::

        customer from United Kingdom; 12 orders over 340 days; spent 1234.50;
        returns 2; recent: bought 6 x WHITE HANGING HEART T-LIGHT HOLDER (2.55)
        3 days ago; returned 1 x ... (1.25) 10 days ago; viewed ... today

    "from X" comes from the user's most frequent `country` (left out when absent);
    orders are distinct purchase orders, days the span since the user's first
    event, spent the gross purchase value, returns the count of return events.
    The `max_events` most recent events (any kind; newest first, ties by row
    order, later rows first) follow "recent:". Item names: `catalogue`'s
    item_text (a frame with item_id, item_text, e.g. `features.item_catalogue`),
    else the item's most frequent item_text in `events` (before `as_of`), else the
    item_id; whitespace trimmed and collapsed. Quantities are printed for
    purchase, return and cart events; prices with two decimals.

    ~115 lines: two polars passes (each user's newest events, their totals), then one expression per clause of the
    sentence the docstring describes.
    """
    where = "user_behaviour_text"
    _require(events, ("user_id", "item_id", "ts", "event", "quantity", "price", "order_id"), where)
    if max_events < 0:
        raise ValueError(f"{where}: max_events={max_events} must be >= 0")
    ev = events.with_row_index(_ROW)
    if as_of is not None:
        ref = _instant(as_of, events.schema["ts"], f"{where}(as_of)")
        ev = ev.filter(pl.col("ts") < ref)
    else:
        ref = pl.lit(ev["ts"].max(), dtype=events.schema["ts"])
    # newest first per user (ties: later rows first); only these rows get phrases
    recent = (
        ev.select(_ROW, "user_id", "item_id", "ts", "event", "quantity", "price")
        .with_columns(_codes("user_id"))
        .sort(["__user_id", "ts", _ROW], descending=[False, True, True])
        .group_by("__user_id", maintain_order=True)
        .head(max_events)
    )
    names = []
    if catalogue is not None:
        _require(catalogue, ("item_id", "item_text"), f"{where}(catalogue)")
        cat = catalogue.select("item_id", pl.col("item_text").alias("__cat_text")).unique(
            "item_id", keep="first", maintain_order=True
        )
        recent = recent.join(cat, on="item_id", how="left", maintain_order="left")
        names.append(pl.col("__cat_text"))
    if "item_text" in ev.columns:
        # the item's most frequent text in these events (a return row often has none)
        common = _mode_by(ev, "item_id", "item_text").rename({"item_text": "__mode_text"})
        recent = recent.join(common, on="item_id", how="left", maintain_order="left")
        names.append(pl.col("__mode_text"))
    name = _clean(pl.coalesce(*names, pl.col("item_id")))
    verb = pl.col("event").cast(pl.String).replace_strict(_VERBS, default="did")
    qty = (
        pl.when(pl.col("event").is_in(["purchase", "return", "cart"]))
        .then(pl.concat_str(pl.col("quantity").cast(pl.String), pl.lit(" x ")))
        .otherwise(pl.lit(""))
    )
    phrase = pl.concat_str(
        verb,
        pl.lit(" "),
        qty,
        name,
        pl.lit(" ("),
        _fixed(pl.col("price")),
        pl.lit(") "),
        _ago(_days(ref - pl.col("ts"))),
    )
    recent = recent.group_by("__user_id", maintain_order=True).agg(
        pl.col("user_id").first(), phrase.str.join("; ").alias("__recent")
    )
    purchase = pl.col("event") == "purchase"
    head = ev.with_columns(_order_key(events)).group_by("user_id").agg(
        pl.col(_OKEY).filter(purchase).n_unique().alias("__orders"),
        _days(ref - pl.col("ts").min()).floor().cast(pl.Int64).alias("__days"),
        (pl.col("quantity") * pl.col("price")).filter(purchase).sum().alias("__spent"),
        (pl.col("event") == "return").sum().alias("__returns"),
    )
    who = pl.lit("customer")
    if "country" in ev.columns:
        head = head.join(_mode_by(ev, "user_id", "country"), on="user_id", how="left")
        who = pl.concat_str(
            who,
            pl.when(pl.col("country").is_not_null())
            .then(pl.concat_str(pl.lit(" from "), pl.col("country")))
            .otherwise(pl.lit("")),
        )
    text = pl.concat_str(
        [
            who,
            pl.concat_str(
                _plural(pl.col("__orders"), "order"), pl.lit(" over "), _plural(pl.col("__days"), "day")
            ),
            pl.concat_str(pl.lit("spent "), _fixed(pl.col("__spent"))),
            pl.concat_str(pl.lit("returns "), pl.col("__returns").cast(pl.String)),
            pl.when(pl.col("__recent").str.len_chars() > 0).then(
                pl.concat_str(pl.lit("recent: "), pl.col("__recent"))
            ),
        ],
        separator="; ",
        ignore_nulls=True,
    )
    return (
        head.join(recent.drop("__user_id"), on="user_id", how="left")
        .select("user_id", text.alias("text"))
        .sort("user_id")
    )


def order_line_text(rows: pl.DataFrame) -> pl.Series:
    """Serialise order lines (rows of `features.risk_examples`) as text, one per row.

    Reads whichever of these columns exist: quantity, price, item_text / item_id,
    line_value, country, ts (else hour/day_of_week), and the customer / item
    history features. Never reads the label (`returned`, `label_closed_at`).
    Example::

        6 x WHITE HANGING HEART T-LIGHT HOLDER at 2.55 each, line 15.30;
        country United Kingdom; Wednesday 08:26, December; customer: 3 prior
        orders, 40 prior lines, 2 prior returns (5.0%), previous order 12 days
        before, customer for 200 days; quantity 2.00x the customer's usual;
        item: 150 prior purchases, return rate 1.2%; price 1.05x the item's usual

    Returns a String Series named ``text``, same length and order as `rows`.

    ~100 lines: one polars expression per clause of the line the docstring shows, each only where its columns exist.
    """
    _require(rows, ("quantity", "price"), "order_line_text")
    c = rows.columns
    col = pl.col
    names = [col(n) for n in ("item_text", "item_id") if n in c]
    name = _clean(pl.coalesce(*names, pl.lit("item")) if names else pl.lit("item"))
    line = pl.concat_str(
        col("quantity").cast(pl.String),
        pl.lit(" x "),
        name,
        pl.lit(" at "),
        _fixed(col("price")),
        pl.lit(" each, line "),
        _fixed(col("line_value") if "line_value" in c else col("quantity") * col("price")),
    )
    parts: list[pl.Expr] = [line]
    if "country" in c:
        parts.append(pl.concat_str(pl.lit("country "), col("country")))
    if "ts" in c:
        parts.append(col("ts").dt.strftime("%A %H:%M, %B"))
    elif "hour" in c and "day_of_week" in c:
        parts.append(
            pl.concat_str(
                pl.lit("day "), col("day_of_week").cast(pl.String), pl.lit(" hour "), col("hour").cast(pl.String)
            )
        )

    if "cust_prior_orders" in c:
        hist = [
            _plural(col("cust_prior_orders"), "prior order"),
        ]
        if "cust_prior_lines" in c:
            hist.append(_plural(col("cust_prior_lines"), "prior line"))
        if "cust_prior_returns" in c:
            rate = (
                pl.concat_str(pl.lit(" ("), _fixed(col("cust_prior_return_rate") * 100, 1), pl.lit("%)"))
                if "cust_prior_return_rate" in c
                else pl.lit("")
            )
            hist.append(
                pl.concat_str(
                    _plural(col("cust_prior_returns"), "prior return"), rate, ignore_nulls=True
                )
            )
        if "cust_days_since_prev_order" in c:
            hist.append(
                pl.concat_str(
                    pl.lit("previous order "),
                    _plural(col("cust_days_since_prev_order").floor().cast(pl.Int64), "day"),
                    pl.lit(" before"),
                )
            )
        if "cust_tenure_days" in c:
            hist.append(
                pl.concat_str(
                    pl.lit("customer for "),
                    _plural(col("cust_tenure_days").floor().cast(pl.Int64), "day"),
                )
            )
        parts.append(
            pl.when(col("cust_prior_orders") > 0)
            .then(pl.concat_str(pl.lit("customer: "), pl.concat_str(hist, separator=", ", ignore_nulls=True)))
            .otherwise(pl.lit("first order of this customer"))
        )
    if "qty_rel_cust_mean" in c:
        parts.append(
            pl.concat_str(pl.lit("quantity "), _fixed(col("qty_rel_cust_mean")), pl.lit("x the customer's usual"))
        )
    if "item_prior_purchases" in c:
        item = [_plural(col("item_prior_purchases"), "prior purchase")]
        if "item_prior_return_rate" in c:
            item.append(
                pl.concat_str(pl.lit("return rate "), _fixed(col("item_prior_return_rate") * 100, 1), pl.lit("%"))
            )
        parts.append(
            pl.when(col("item_prior_purchases") > 0)
            .then(pl.concat_str(pl.lit("item: "), pl.concat_str(item, separator=", ", ignore_nulls=True)))
            .otherwise(pl.lit("item never bought before"))
        )
    if "price_rel_item_mean" in c:
        parts.append(
            pl.concat_str(pl.lit("price "), _fixed(col("price_rel_item_mean")), pl.lit("x the item's usual"))
        )
    return rows.select(pl.concat_str(parts, separator="; ", ignore_nulls=True).alias("text")).to_series()
