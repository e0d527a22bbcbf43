"""The `sequences` source format: one line per user, `user_id item_id item_id ...`, oldest first.

Sits in `data` beside the readers (`data.readers.read_source` calls it for
`format: sequences`): the form most public sequential-recommendation benchmarks
ship in (Amazon 5-core, MovieLens as prepared by the S3-Rec/FMLP-Rec family).
There are no timestamps, so each item's `ts` is its position in the line, in
seconds after 2000-01-01 UTC: the order is the only time the format has, and
every later step (leave-one-out splits, windows) reads order from `ts`.
Optional item attributes (`{item_id: [attribute ids]}` JSON) become each item's
`item_text` ("attributes 12 45"). Every failure is a ValueError naming the file,
the line and the bad value (the readers raise it as their DataError).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import polars as pl

__all__ = ["SEQUENCES_EPOCH", "parse_sequences", "parse_item_attributes"]

SEQUENCES_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)


def parse_sequences(text: str, uri: str, attributes: dict[str, str] | None = None) -> pl.DataFrame:
    """Lines `user item item ...` -> one row per item: user_id, item_id (text), ts (position), item_text.

    Raises ValueError naming `uri`, the 1-based line and the value for an empty
    line, a line with no item, a token that is not a whole number, or a user
    that appears on two lines.
    """
    users: list[str] = []
    items: list[str] = []
    lengths: list[int] = []
    first_line: dict[str, int] = {}
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line, it does not open an empty one
    for n, line in enumerate(lines, start=1):
        tokens = line.split()
        if not tokens:
            raise ValueError(f"{uri}: line {n} is empty (expected 'user_id item_id ...')")
        bad = next((t for t in tokens if not t.isdigit()), None)
        if bad is not None:
            what = "user id" if bad is tokens[0] else "item id"
            raise ValueError(f"{uri}: line {n}: {what} {bad!r} is not a whole number")
        user = str(int(tokens[0]))
        if user in first_line:
            raise ValueError(f"{uri}: line {n}: user {tokens[0]!r} already has a sequence on line {first_line[user]}")
        if len(tokens) < 2:
            raise ValueError(f"{uri}: line {n}: user {tokens[0]!r} has no items")
        first_line[user] = n
        users.append(user)
        items.extend(str(int(t)) for t in tokens[1:])
        lengths.append(len(tokens) - 1)
    if not users:
        raise ValueError(f"{uri}: file has no lines")
    counts = np.asarray(lengths)
    # position within each line: 0, 1, ... restarting on every user
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    position = np.arange(len(items)) - starts
    df = pl.DataFrame({
        "user_id": np.repeat(np.asarray(users, dtype=object), counts).tolist(),
        "item_id": items,
        "ts": pl.Series(position, dtype=pl.Int64),
    })
    df = df.with_columns(
        (pl.lit(SEQUENCES_EPOCH) + pl.duration(seconds=pl.col("ts"))).dt.cast_time_unit("us").alias("ts"),
    )
    text_col = pl.col("item_id").replace_strict(attributes, default=None) if attributes else pl.lit(None)
    return df.with_columns(text_col.cast(pl.String).alias("item_text"))


def parse_item_attributes(raw: bytes | str, uri: str) -> dict[str, str]:
    """`{item_id: [attribute ids]}` JSON -> {item_id: "attributes 12 45"} (the item's text)."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"{uri}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{uri}: expected an object {{item_id: [attribute ids]}}, got {type(data).__name__}")
    out: dict[str, str] = {}
    for item, attrs in data.items():
        if not str(item).isdigit():
            raise ValueError(f"{uri}: item id {item!r} is not a whole number")
        if not isinstance(attrs, list) or not all(isinstance(a, int | str) for a in attrs):
            raise ValueError(f"{uri}: item {item!r}: expected a list of attribute ids, got {attrs!r}"[:300])
        out[str(int(item))] = "attributes " + " ".join(str(a) for a in attrs)
    return out

