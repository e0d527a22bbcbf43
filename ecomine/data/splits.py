"""Train / validation / test splits that cannot leak the future into training.

Last step of the data layer (events -> features -> **splits** -> models): the
recommend trainer takes `leave_one_out` over `features.user_sequences`; the demand
and risk trainers take `temporal_split` over their feature frames.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from ecomine.data._frames import _instant

__all__ = ["Splits", "leave_one_out", "temporal_split"]


@dataclass(frozen=True)
class Splits:
    """Three frames: `train`, `valid`, `test` (a frame may be empty, never None).

    From `leave_one_out`: train ``[user_id, items: list[str] (, ts)]``; valid and
    test ``[user_id, history: list[str], target: str (, history_ts, target_ts)]``.
    From `temporal_split`: the input frame's columns in all three.
    """

    train: pl.DataFrame
    valid: pl.DataFrame
    test: pl.DataFrame

    def sizes(self) -> dict[str, int]:
        """Row count of each frame."""
        return {"train": self.train.height, "valid": self.valid.height, "test": self.test.height}


def leave_one_out(sequences: pl.DataFrame, *, min_len: int = 3) -> Splits:
    """Hold out each user's last item for test and the one before for validation.

    For a user with ``len(items) >= min_len`` (input: `features.user_sequences`):

    - test  = (history = items[:-1], target = items[-1])
    - valid = (history = items[:-2], target = items[-2])
    - train = items[:-2]

    so a validation target is never a train input and a test target never a train
    or validation input (by position; a repeat purchase of the same item earlier in
    the sequence is history, not leakage). Users with fewer than `min_len` items
    stay in train only, with all their items, and have no valid/test rows. When the
    input has a ``ts`` list column it is sliced alongside (train ``ts``; valid/test
    ``history_ts`` and ``target_ts``). All frames sorted by user_id.
    """
    where = "leave_one_out"
    for c in ("user_id", "items"):
        if c not in sequences.columns:
            raise ValueError(f"{where}: sequences frame lacks column {c!r}; it has {sequences.columns}")
    if min_len < 3:
        raise ValueError(f"{where}: min_len={min_len} must be >= 3 (valid needs a non-empty history)")
    has_ts = "ts" in sequences.columns
    n = pl.col("items").list.len()
    seqs = sequences.select("user_id", "items", *(["ts"] if has_ts else [])).sort("user_id")
    long = seqs.filter(n >= min_len)
    short = seqs.filter(n < min_len)

    def held(drop: int) -> pl.DataFrame:
        # history = items[: len - drop], target = items[len - drop]
        cut = n - drop
        cols = [
            "user_id",
            pl.col("items").list.head(cut).alias("history"),
            pl.col("items").list.get(-drop).alias("target"),
        ]
        if has_ts:
            cols += [
                pl.col("ts").list.head(cut).alias("history_ts"),
                pl.col("ts").list.get(-drop).alias("target_ts"),
            ]
        return long.select(cols)

    train_long = long.with_columns(
        pl.col(c).list.head(n - 2) for c in (["items", "ts"] if has_ts else ["items"])
    )
    train = pl.concat([train_long, short]).sort("user_id")
    return Splits(train=train, valid=held(2), test=held(1))


def temporal_split(
    frame: pl.DataFrame,
    *,
    ts_col: str = "ts",
    cutoff: dt.datetime | dt.date,
    valid_cutoff: dt.datetime | dt.date | None = None,
    label_closed_col: str | None = None,
    end: dt.datetime | dt.date | None = None,
) -> Splits:
    """Split rows by time: train before, test at/after `cutoff`.

    - train: ``ts < valid_cutoff`` (or ``< cutoff`` without a validation window)
    - valid: ``valid_cutoff <= ts < cutoff`` (empty when `valid_cutoff` is None)
    - test:  ``cutoff <= ts`` (and ``ts < end`` when `end` is given)

    With `label_closed_col` (e.g. ``label_closed_at`` of `features.risk_examples`)
    a row is kept only when its label closed by the end of its own window: train at
    or before its upper bound (valid_cutoff or cutoff), valid at or before
    `cutoff`, test at or before `end` (test is not filtered when `end` is None).
    So no training label depends on anything after the cut-off. Naive datetimes
    are read as UTC. Row order within each frame is kept.
    """
    where = "temporal_split"
    for c in (ts_col, label_closed_col):
        if c is not None and c not in frame.columns:
            raise ValueError(f"{where}: frame lacks column {c!r}; it has {frame.columns}")

    def lit(v: dt.datetime | dt.date, col: str, name: str) -> pl.Expr:
        return _instant(v, frame.schema[col], f"{where}({name})")

    ts = pl.col(ts_col)
    cut = lit(cutoff, ts_col, "cutoff")
    train_hi = cut
    valid: pl.DataFrame = frame.clear()
    if valid_cutoff is not None:
        if _as_utc(valid_cutoff) >= _as_utc(cutoff):
            raise ValueError(f"{where}: valid_cutoff={valid_cutoff} must be before cutoff={cutoff}")
        train_hi = lit(valid_cutoff, ts_col, "valid_cutoff")
        valid_rows = frame.filter(ts >= train_hi, ts < cut)
        if label_closed_col is not None:
            valid_rows = valid_rows.filter(
                pl.col(label_closed_col) <= lit(cutoff, label_closed_col, "cutoff")
            )
        valid = valid_rows
    train = frame.filter(ts < train_hi)
    if label_closed_col is not None:
        bound = valid_cutoff if valid_cutoff is not None else cutoff
        train = train.filter(pl.col(label_closed_col) <= lit(bound, label_closed_col, "cutoff"))
    test = frame.filter(ts >= cut)
    if end is not None:
        if _as_utc(end) <= _as_utc(cutoff):
            raise ValueError(f"{where}: end={end} must be after cutoff={cutoff}")
        test = test.filter(ts < lit(end, ts_col, "end"))
        if label_closed_col is not None:
            test = test.filter(pl.col(label_closed_col) <= lit(end, label_closed_col, "end"))
    return Splits(train=train, valid=valid, test=test)


def _as_utc(value: dt.datetime | dt.date) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time())
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value
