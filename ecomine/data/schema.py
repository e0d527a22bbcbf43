"""Canonical events: the one table every reader produces and every builder consumes.

Sits at the head of the flow (data -> models -> ...). A reader maps a source's
columns onto these names; cleaning, features and splits only ever see this shape.
"""

from __future__ import annotations

import polars as pl

__all__ = [
    "EVENT_TYPES",
    "EVENT_DTYPE",
    "EVENT_COLUMNS",
    "REQUIRED_COLUMNS",
    "empty_events",
    "validate_events",
    "EventsSchemaError",
]

EVENT_TYPES: tuple[str, ...] = ("view", "click", "cart", "purchase", "return", "review")
EVENT_DTYPE = pl.Enum(list(EVENT_TYPES))

# Column name -> polars dtype, in canonical order. `linked_order_id` is set on a
# `return` event when cleaning could tie it to the purchase order it cancels.
EVENT_COLUMNS: dict[str, pl.DataType] = {
    "user_id": pl.String(),
    "item_id": pl.String(),
    "ts": pl.Datetime("us", "UTC"),
    "event": EVENT_DTYPE,
    "quantity": pl.Int64(),
    "price": pl.Float64(),
    "order_id": pl.String(),
    "item_text": pl.String(),
    "linked_order_id": pl.String(),
}
# user_id may be null before cleaning (anonymous rows); cleaning drops those.
REQUIRED_COLUMNS: tuple[str, ...] = ("item_id", "ts", "event")


class EventsSchemaError(ValueError):
    """A frame does not have the canonical event columns or dtypes."""


def empty_events(extra: dict[str, pl.DataType] | None = None) -> pl.DataFrame:
    """An empty canonical frame (plus optional attribute columns)."""
    return pl.DataFrame(schema={**EVENT_COLUMNS, **(extra or {})})


def validate_events(df: pl.DataFrame) -> pl.DataFrame:
    """Check column names and dtypes; return the frame with canonical columns first.

    Extra columns (user/item attributes kept by a mapping, e.g. `country`) are kept
    after the canonical ones.
    """
    missing = [c for c in EVENT_COLUMNS if c not in df.columns]
    if missing:
        raise EventsSchemaError(f"events frame lacks canonical column(s) {missing}")
    wrong = {
        c: str(df.schema[c]) for c, dt in EVENT_COLUMNS.items() if df.schema[c] != dt
    }
    if wrong:
        raise EventsSchemaError(f"events frame has wrong dtype(s): {wrong}")
    extra = [c for c in df.columns if c not in EVENT_COLUMNS]
    return df.select([*EVENT_COLUMNS, *extra])
