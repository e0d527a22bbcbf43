"""The risk model's inputs: an order line as numbers and text, from training rows or a served request.

Sits in `models` beside `risk`: the numeric scaler and feature matrix, the
encoder's text, the per-customer and per-item history state a served request
is featurised against, and the request check. Training rows come from
`ecomine.data.risk_examples`; `order_lines_frame` gives a request the same
`RISK_FEATURES`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import polars as pl

from ecomine.data.risk_examples import RISK_FEATURES

__all__ = [
    "NumericScaler", "numeric_matrix", "line_texts", "history_state", "validate_orders", "order_lines_frame",
    "order_probabilities",
]


# --------------------------------------------------------------------------- numbers


@dataclass
class NumericScaler:
    """Signed log1p, then standardise with train statistics; nulls -> 0 plus a 1 in a missing indicator."""

    names: list[str]
    mean: list[float]
    std: list[float]

    @classmethod
    def fit(cls, raw: np.ndarray, names: list[str]) -> NumericScaler:
        z = _slog(raw)
        with np.errstate(all="ignore"):
            mean = np.nan_to_num(np.nanmean(z, axis=0)) if len(z) else np.zeros(z.shape[1])
            std = np.nan_to_num(np.nanstd(z, axis=0)) if len(z) else np.ones(z.shape[1])
        return cls(names=list(names), mean=mean.tolist(), std=np.where(std > 1e-6, std, 1.0).tolist())

    @property
    def width(self) -> int:
        return 2 * len(self.names)

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """[n, F] with NaN for missing -> [n, 2F] float32: standardised values, then missing indicators."""
        if raw.ndim != 2 or raw.shape[1] != len(self.names):
            raise ValueError(f"numeric features: expected [n, {len(self.names)}] ({self.names}), got {raw.shape}")
        z = (_slog(raw) - np.asarray(self.mean)) / np.asarray(self.std)
        missing = ~np.isfinite(z)
        return np.concatenate([np.where(missing, 0.0, z), missing], axis=1).astype(np.float32)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _slog(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.log1p(np.abs(x))


def numeric_matrix(frame: pl.DataFrame, names: list[str] | tuple[str, ...] = RISK_FEATURES) -> np.ndarray:
    """The frame's feature columns as float64 [n, F], nulls as NaN."""
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ValueError(f"risk features: frame lacks column(s) {missing}")
    return frame.select(pl.col(n).cast(pl.Float64) for n in names).to_numpy().astype(np.float64)


# --------------------------------------------------------------------------- text


def line_texts(frame: pl.DataFrame, text: str) -> list[str]:
    """The encoder's input per row: the whole order line (`order_line_text`) or the item title."""
    if text == "line":
        from ecomine.data.text import order_line_text

        return order_line_text(frame).fill_null("").to_list()
    if text == "item":
        name = pl.coalesce(pl.col("item_text"), pl.col("item_id")) if "item_text" in frame.columns else pl.col("item_id")
        return frame.select(name.str.replace_all(r"\s+", " ").str.strip_chars().fill_null("")).to_series().to_list()
    raise ValueError(f"text: unknown kind {text!r}; use line | item")


# --------------------------------------------------------------------------- history state


def history_state(events: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(customers, items): the running totals `risk_examples` computes, as of the log's end.

    customers: user_id, orders, lines, returns, qty_sum, first_ts, last_order_ts, country.
    items: item_id, item_text, purchases, returns, price_sum.
    """
    buy, ret = pl.col("event") == "purchase", pl.col("event") == "return"
    order_key = pl.coalesce(pl.col("order_id"), pl.lit("\x00") + pl.col("ts").cast(pl.String))
    country = [pl.col("country").drop_nulls().mode().first().alias("country")] if "country" in events.columns else [
        pl.lit(None, pl.String).alias("country")
    ]
    customers = (
        events.group_by("user_id")
        .agg(
            order_key.filter(buy).n_unique().cast(pl.Int64).alias("orders"),
            buy.sum().cast(pl.Int64).alias("lines"),
            ret.sum().cast(pl.Int64).alias("returns"),
            pl.col("quantity").filter(buy).sum().cast(pl.Float64).alias("qty_sum"),
            pl.col("ts").min().alias("first_ts"),
            pl.col("ts").filter(buy).max().alias("last_order_ts"),
            *country,
        )
        .sort("user_id")
    )
    text = [pl.col("item_text").drop_nulls().mode().first().alias("item_text")] if "item_text" in events.columns else [
        pl.lit(None, pl.String).alias("item_text")
    ]
    items = (
        events.group_by("item_id")
        .agg(
            *text,
            buy.sum().cast(pl.Int64).alias("purchases"),
            ret.sum().cast(pl.Int64).alias("returns"),
            pl.col("price").filter(buy).sum().cast(pl.Float64).alias("price_sum"),
        )
        .sort("item_id")
    )
    return customers, items


# --------------------------------------------------------------------------- requests


def validate_orders(orders: Any) -> list[dict[str, Any]]:
    """Check request orders; ValueError naming `orders[i].lines[j].field` and the value."""
    if not isinstance(orders, (list, tuple)):
        raise ValueError(f"orders: expected a list of order dicts, got {type(orders).__name__}")
    out = []
    for i, o in enumerate(orders):
        where = f"orders[{i}]"
        if not isinstance(o, dict):
            raise ValueError(f"{where}: expected a dict, got {type(o).__name__}")
        for key in ("order_id", "user_id", "country"):
            v = o.get(key)
            if v is not None and not isinstance(v, str):
                raise ValueError(f"{where}.{key}: expected a string or None, got {v!r}")
        ts = o.get("ts")
        if isinstance(ts, str):
            try:
                ts = datetime.fromisoformat(ts)
            except ValueError:
                raise ValueError(f"{where}.ts: not an ISO datetime: {ts!r}") from None
        if ts is None:
            ts = datetime.now(timezone.utc)
        if not isinstance(ts, datetime):
            raise ValueError(f"{where}.ts: expected a datetime, ISO string or None, got {ts!r}")
        ts = ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)
        lines = o.get("lines")
        if not isinstance(lines, (list, tuple)) or not lines:
            raise ValueError(f"{where}.lines: expected a non-empty list of lines, got {lines!r}")
        clean = []
        for j, line in enumerate(lines):
            lw = f"{where}.lines[{j}]"
            if not isinstance(line, dict):
                raise ValueError(f"{lw}: expected a dict, got {type(line).__name__}")
            item = line.get("item_id")
            if not isinstance(item, str) or not item:
                raise ValueError(f"{lw}.item_id: expected a non-empty string, got {item!r}")
            q = line.get("quantity", 1)
            if isinstance(q, bool) or not isinstance(q, (int, np.integer)) or q < 1:
                raise ValueError(f"{lw}.quantity: expected an integer >= 1, got {q!r}")
            price = line.get("price")
            if price is not None and (
                isinstance(price, bool) or not isinstance(price, (int, float)) or not math.isfinite(price) or price < 0
            ):
                raise ValueError(f"{lw}.price: expected a finite number >= 0 or None, got {price!r}")
            clean.append({"item_id": item, "quantity": int(q), "price": None if price is None else float(price)})
        out.append({**o, "ts": ts, "lines": clean})
    return out


def order_lines_frame(orders: list[dict[str, Any]], customers: pl.DataFrame, items: pl.DataFrame) -> pl.DataFrame:
    """Validated orders -> one row per line with the RISK_FEATURES `risk_examples` would give it.

    Defaults (documented behaviour, never an error): an unknown or missing customer has
    no history (0 prior orders/lines/returns, null ratios, tenure 0); the order's country,
    else the customer's usual country; an unknown item has null item features and its id
    as text; a missing price is the item's mean price (null for an unknown item).
    """
    rows = [
        {"__order": i, "user_id": o.get("user_id"), "ts": o["ts"], "req_country": o.get("country"),
         "item_id": line["item_id"], "quantity": line["quantity"], "price": line["price"]}
        for i, o in enumerate(orders) for line in o["lines"]
    ]
    schema = {"__order": pl.Int64, "user_id": pl.String, "ts": pl.Datetime("us", "UTC"), "req_country": pl.String,
              "item_id": pl.String, "quantity": pl.Int64, "price": pl.Float64}
    df = pl.DataFrame(rows, schema=schema)
    cust = customers.with_columns(pl.col("first_ts", "last_order_ts").dt.cast_time_unit("us").dt.convert_time_zone("UTC"))
    df = df.join(cust, on="user_id", how="left", maintain_order="left").join(
        items.rename({"returns": "item_returns"}), on="item_id", how="left", maintain_order="left"
    )
    c = pl.col
    lines = c("lines").fill_null(0)
    item_lines = c("purchases").fill_null(0)
    price = pl.coalesce(c("price"), pl.when(item_lines > 0).then(c("price_sum") / item_lines))
    days = lambda e: e.dt.total_microseconds() / 86_400_000_000.0  # noqa: E731
    return df.with_columns(price.alias("price")).select(
        "__order", "user_id", "item_id", "item_text", "ts",
        pl.coalesce(c("req_country"), c("country")).alias("country"),
        "quantity", "price",
        (c("quantity") * c("price")).alias("line_value"),
        c("orders").fill_null(0).alias("cust_prior_orders"),
        lines.alias("cust_prior_lines"),
        c("returns").fill_null(0).alias("cust_prior_returns"),
        pl.when(lines > 0).then(c("returns") / lines).alias("cust_prior_return_rate"),
        days(c("ts") - c("last_order_ts")).clip(0).alias("cust_days_since_prev_order"),
        days(c("ts") - c("first_ts")).clip(0).fill_null(0.0).alias("cust_tenure_days"),
        item_lines.alias("item_prior_purchases"),
        pl.when(item_lines > 0).then(c("item_returns") / item_lines).alias("item_prior_return_rate"),
        pl.when(c("qty_sum") > 0).then(c("quantity") * lines / c("qty_sum")).alias("qty_rel_cust_mean"),
        pl.when(c("price_sum") > 0).then(c("price") * item_lines / c("price_sum")).alias("price_rel_item_mean"),
        c("ts").dt.hour().alias("hour"),
        c("ts").dt.weekday().alias("day_of_week"),
    )


def order_probabilities(line_p: np.ndarray, order_of_line: np.ndarray, n_orders: int) -> np.ndarray:
    """P(any line of the order returned) = 1 - prod(1 - p_line), per order [n_orders].

    Lines are treated as independent given their features; every served risk model
    (encoder or LightGBM) turns its line probabilities into order probabilities here.
    """
    p = np.clip(line_p, 0.0, 1.0)
    keep = np.zeros(n_orders)
    np.add.at(keep, order_of_line, np.log1p(-np.minimum(p, 1 - 1e-12)))
    return 1.0 - np.exp(keep)
