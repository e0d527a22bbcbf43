"""Readers: source files (csv | parquet | jsonl | sequences, local or s3://) -> canonical events.

First step of the data flow. `read_source` loads one file as it is; `to_canonical`
maps, coerces and labels its rows per the DataSpec. Both work on one batch at a
time, so Ray Data can run `to_canonical` per block (see `ecomine.data.distributed`).
Every failure is a DataError naming the file, the column and a bad value.
"""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl

from ecomine.data.schema import EVENT_COLUMNS, EVENT_DTYPE, EVENT_TYPES
from ecomine.specs import Condition, DataSpec, SourceSpec, SpecError, expand_uri

__all__ = ["DataError", "read_source", "local_source_path", "to_canonical", "condition_expr", "DROP", "SOURCE", "FLIPPED"]

# Working columns carried through cleaning and removed at the end: the reason a
# row is dropped (null = kept) and the index of the source it came from.
DROP = "_drop"
SOURCE = "_source"
FLIPPED = "_flipped"  # a return whose negative source quantity was made positive


class DataError(ValueError):
    """Bad input data: the message names the file/URI, column and offending value."""


def local_source_path(uri: str, fmt: str) -> Path:
    """The local file behind `uri`, or a DataError saying why it cannot be read."""
    path = Path(uri.removeprefix("file://"))
    if not path.exists():
        raise DataError(f"{uri}: file not found")
    if path.is_dir():
        raise DataError(f"{uri}: is a folder, expected a {fmt} file")
    if path.stat().st_size == 0:
        raise DataError(f"{uri}: file is empty")
    return path


def _read_bytes(uri: str, fmt: str) -> bytes:
    """The whole file at a local path or s3:// URI; DataError when missing or empty."""
    if uri.startswith("s3://"):
        from ecomine import storage

        try:
            data = storage.read_bytes(uri)
        except storage.StorageError as e:
            raise DataError(str(e)) from None
        if not data:
            raise DataError(f"{uri}: file is empty")
        return data
    return local_source_path(uri, fmt).read_bytes()


def _read_sequences(source: SourceSpec, uri: str) -> pl.DataFrame:
    """A `format: sequences` file (and its item attributes) as rows of user_id, item_id, ts, item_text."""
    from ecomine.data.sequences import parse_item_attributes, parse_sequences

    try:
        attributes = None
        if source.item_attributes is not None:
            attr_uri = expand_uri(source.item_attributes)
            attributes = parse_item_attributes(_read_bytes(attr_uri, "json"), attr_uri)
        raw = _read_bytes(uri, "sequences")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{uri}: not UTF-8 text (byte {e.start})") from None
        return parse_sequences(text, uri, attributes)
    except (SpecError, ValueError) as e:
        raise DataError(str(e)) from None


def _read_event_log(uri: str) -> pl.DataFrame:
    """A served app's event log (a folder or s3:// prefix of date-partitioned parquet, ecomine.live.event_log)."""
    from ecomine import storage
    from ecomine.live.event_log import read_event_log

    try:
        df = read_event_log(uri)
    except storage.StorageError as e:
        raise DataError(str(e)) from None
    if df.height == 0:
        raise DataError(f"{uri}: the event log holds no events yet (no events-*.parquet under it)")
    return df


def read_source(source: SourceSpec) -> pl.DataFrame:
    """Read one source file as it is (no mapping yet)."""
    try:
        uri = expand_uri(source.uri)
        fmt = source.resolved_format()
    except (SpecError, ValueError) as e:
        raise DataError(str(e)) from None
    if fmt == "sequences":
        return _read_sequences(source, uri)
    if fmt == "event_log":
        return _read_event_log(uri)
    handle: io.BytesIO | str
    if uri.startswith("s3://"):
        handle = io.BytesIO(_read_bytes(uri, fmt))
    else:
        handle = str(local_source_path(uri, fmt))
    try:
        if fmt == "parquet":
            df = pl.read_parquet(handle)
        elif fmt == "csv":
            # Everything as text: coercion below reports the first bad value by
            # column, which type inference would hide behind a parser error.
            df = pl.read_csv(handle, infer_schema=False, separator=source.csv_separator)
        else:
            df = pl.read_ndjson(handle, infer_schema_length=None)
    except Exception as e:  # polars raises several types for unreadable input
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{uri}: not a valid {fmt} file ({first[:160]})") from None
    if df.height == 0:
        raise DataError(f"{uri}: file has no rows")
    return df


def condition_expr(cond: Condition, columns: list[str], where: str) -> pl.Expr:
    """A polars boolean expression for a Condition (null-safe: null never matches)."""
    if cond.column not in columns:
        raise DataError(f"{where}: condition column '{cond.column}' not in {columns}")
    col = pl.col(cond.column)
    if cond.is_null is not None:
        return col.is_null() if cond.is_null else col.is_not_null()
    if cond.equals is not None:
        e = col.cast(pl.String) == str(cond.equals) if isinstance(cond.equals, str) else col == cond.equals
    elif cond.starts_with is not None:
        e = col.cast(pl.String).str.starts_with(cond.starts_with)
    elif cond.matches is not None:
        e = col.cast(pl.String).str.contains(cond.matches)
    elif cond.in_ is not None:
        e = col.cast(pl.String).is_in([str(v) for v in cond.in_])
    elif cond.not_in is not None:
        e = ~col.cast(pl.String).is_in([str(v) for v in cond.not_in])
    else:
        bound = {"gt": cond.gt, "ge": cond.ge, "lt": cond.lt, "le": cond.le}
        op, v = next((k, x) for k, x in bound.items() if x is not None)
        e = getattr(col.cast(pl.Float64), f"__{op}__")(v)
    return e.fill_null(False)


def _bad_value(df: pl.DataFrame, raw: pl.Expr, parsed: pl.Expr) -> tuple[int, object] | None:
    """Row index and value of the first non-null input that failed to parse."""
    bad = df.with_row_index("_row").filter(raw.is_not_null() & parsed.is_null())
    if bad.height == 0:
        return None
    return int(bad["_row"][0]), bad.select(raw.alias("v"))["v"][0]


def _coerce(df: pl.DataFrame, src_col: str, name: str, uri: str, source: SourceSpec) -> pl.Expr:
    """Expression turning source column `src_col` into canonical column `name`."""
    dtype = df.schema[src_col]
    raw = pl.col(src_col)
    where = f"{uri}: column '{src_col}' (mapped to {name})"
    if name == "ts":
        if isinstance(dtype, pl.Datetime):
            e = raw if dtype.time_zone else raw.dt.replace_time_zone(source.ts_timezone, ambiguous="earliest", non_existent="null")
            return e.dt.convert_time_zone("UTC").dt.cast_time_unit("us").alias(name)
        if isinstance(dtype, pl.Date):
            return raw.cast(pl.Datetime("us")).dt.replace_time_zone(source.ts_timezone, ambiguous="earliest", non_existent="null").dt.convert_time_zone("UTC").alias(name)
        if dtype == pl.String:
            text = raw.str.strip_chars()
            parsed = text.str.to_datetime(source.ts_format, strict=False, time_unit="us")
            try:
                probe = df.select(parsed.alias("p"))["p"]
            except Exception as e:  # inference failure when no format is given
                raise DataError(f"{where}: cannot parse timestamps ({str(e).splitlines()[0][:120]}); set ts_format") from None
            bad = _bad_value(df, text, parsed)
            if bad:
                fmt = f" with format {source.ts_format!r}" if source.ts_format else ""
                raise DataError(f"{where}: unparseable timestamp {bad[1]!r} at row {bad[0]}{fmt}")
            tz = probe.dtype.time_zone if isinstance(probe.dtype, pl.Datetime) else None
            e = parsed if tz else parsed.dt.replace_time_zone(source.ts_timezone, ambiguous="earliest", non_existent="null")
            return e.dt.convert_time_zone("UTC").alias(name)
        raise DataError(f"{where}: expected a timestamp, got type {dtype}")
    if name in ("quantity", "price"):
        target = pl.Int64 if name == "quantity" else pl.Float64
        if dtype.is_numeric():
            if name == "quantity" and dtype.is_float():
                bad = _bad_value(df, raw, pl.when(raw == raw.round(0)).then(raw))
                if bad:
                    raise DataError(f"{where}: quantity must be a whole number, got {bad[1]!r} at row {bad[0]}")
            return raw.cast(target).alias(name)
        if dtype == pl.String:
            parsed = raw.str.strip_chars().cast(target, strict=False)
            bad = _bad_value(df, raw, parsed)
            if bad:
                raise DataError(f"{where}: expected a {'whole number' if name == 'quantity' else 'number'}, got {bad[1]!r} at row {bad[0]}")
            return parsed.alias(name)
        raise DataError(f"{where}: expected a number, got type {dtype}")
    # id and text columns: numbers become their integer text (CustomerID 17850.0 -> "17850").
    if dtype.is_float():
        bad = _bad_value(df, raw, pl.when(raw == raw.round(0)).then(raw))
        if bad:
            raise DataError(f"{where}: expected an id, got non-integral {bad[1]!r} at row {bad[0]}")
        return raw.cast(pl.Int64).cast(pl.String).alias(name)
    if dtype.is_integer() or dtype == pl.Boolean:
        return raw.cast(pl.String).alias(name)
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        e = raw.cast(pl.String).str.strip_chars()
        return pl.when(e == "").then(None).otherwise(e).alias(name)
    raise DataError(f"{where}: expected text, got type {dtype}")


def to_canonical(df: pl.DataFrame, source: SourceSpec, spec: DataSpec, *, source_index: int = 0) -> pl.DataFrame:
    """Map one batch of a source onto the canonical columns and label its events.

    Returns canonical columns + kept attributes + `_source` + `_drop` (the reason
    an event rule dropped the row, else null). Returns are given positive
    quantities here: the sign in the source only restated the event type.
    """
    uri = expand_uri(source.uri)
    columns = source.mapped_columns()
    wanted = {**columns, **source.keep}
    missing = {name: col for name, col in wanted.items() if col not in df.columns}
    if missing:
        name, col = next(iter(missing.items()))
        raise DataError(
            f"{uri}: column '{col}' (mapped to {name}) not found; columns are {df.columns}"
        )
    exprs = [_coerce(df, col, name, uri, source) for name, col in columns.items() if name != "event"]
    for name, col in source.keep.items():
        exprs.append(pl.col(col).alias(name))
    out = df.select(exprs)
    for name, dtype in EVENT_COLUMNS.items():
        if name not in out.columns and name != "event":
            out = out.with_columns(pl.lit(None, dtype=dtype).alias(name))
    # Event type: from a mapped column, else the default; then the rules.
    if "event" in columns:
        col = columns["event"]
        values = df.get_column(col).cast(pl.String).str.strip_chars()
        mapping = {**{e: e for e in EVENT_TYPES}, **source.event_values}
        unknown = sorted(set(values.drop_nulls().unique().to_list()) - set(mapping))
        if unknown:
            raise DataError(
                f"{uri}: column '{col}' (mapped to event): unknown event value(s) {unknown[:5]}; "
                f"map them with event_values or use one of {list(EVENT_TYPES)}"
            )
        if values.null_count():
            raise DataError(f"{uri}: column '{col}' (mapped to event) has empty values")
        event = values.replace_strict(mapping, return_dtype=pl.String)
        out = out.with_columns(event.alias("event"))
    else:
        out = out.with_columns(pl.lit(spec.default_event).alias("event"))
    cols = out.columns
    drop = pl.lit(None, dtype=pl.String)
    event = pl.col("event")
    # First matching rule wins: build the chains from the last rule backwards.
    for i, rule in reversed(list(enumerate(spec.event_rules))):
        cond = condition_expr(rule.when, cols, f"{uri}: event_rules.{i}")
        if rule.drop is not None:
            drop = pl.when(cond).then(pl.lit(f"rule:{rule.drop}")).otherwise(drop)
        else:
            event = pl.when(cond).then(pl.lit(rule.event)).otherwise(event)
            drop = pl.when(cond).then(pl.lit(None, dtype=pl.String)).otherwise(drop)
    out = out.with_columns(event.cast(EVENT_DTYPE).alias("event"), drop.alias(DROP))
    flip = (pl.col("event") == "return") & (pl.col("quantity") < 0)
    out = out.with_columns(
        pl.when(flip).then(-pl.col("quantity")).otherwise(pl.col("quantity")).alias("quantity"),
        flip.fill_null(False).alias(FLIPPED),
        pl.lit(source_index, dtype=pl.Int32).alias(SOURCE),
    )
    extra = [c for c in out.columns if c not in EVENT_COLUMNS and c not in (DROP, SOURCE, FLIPPED)]
    return out.select([*EVENT_COLUMNS, *extra, SOURCE, FLIPPED, DROP])
