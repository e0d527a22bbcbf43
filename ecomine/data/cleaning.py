"""Cleaning: canonical events -> clean events + a report counting every row touched.

Second step of the data flow, after `readers`. Nothing is lost silently: each
dropped row carries one reason (the first that applies, in the order below) and
the report counts rows by reason, plus the rows that were changed.

Row-level rules (`mark_row_drops`) need nothing but the row, so they run per
batch anywhere (in-process or a Ray Data block). The two steps that need a
user's other rows (exact duplicates, linking a return to the purchase it
cancels) live in `finalize_user_events`, which is correct on any frame that
holds all the rows of the users in it (a whole log, or a Ray Data group).
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime
from pathlib import Path

import polars as pl
from pydantic import BaseModel, Field

from ecomine.data.readers import DROP, FLIPPED, SOURCE, DataError, condition_expr, read_source, to_canonical
from ecomine.data.schema import EVENT_COLUMNS
from ecomine.specs import CleaningSpec, DataSpec, expand_uri

__all__ = [
    "SourceReport",
    "CleaningReport",
    "DROP_REASONS",
    "load_events",
    "clean_frame",
    "mark_overlap",
    "mark_row_drops",
    "finalize_user_events",
    "build_report",
    "data_fingerprint",
]

# The order in which reasons are tried; a row is counted under the first match.
DROP_REASONS = (
    "overlap",
    "rule:*",
    "filter",
    "missing_user",
    "non_product",
    "non_positive_price",
    "non_positive_quantity",
    "quantity_outlier",
    "duplicate",
)


class SourceReport(BaseModel):
    uri: str
    rows_read: int
    sha256: str | None = None


class CleaningReport(BaseModel):
    """What cleaning read, dropped (by reason), changed (by kind) and kept."""

    name: str
    sources: list[SourceReport]
    rows_read: int
    rows_after_overlap: int
    dropped: dict[str, int] = Field(default_factory=dict)
    changed: dict[str, int] = Field(default_factory=dict)
    rows_out: int
    users: int
    items: int
    orders: int
    first_ts: datetime | None
    last_ts: datetime | None
    events: dict[str, int] = Field(default_factory=dict)
    fingerprint: str
    seconds: float = 0.0


def mark_overlap(frames: list[pl.DataFrame], key: str | None) -> list[pl.DataFrame]:
    """Mark rows whose `key` already appears in an earlier source as `overlap`.

    Sources are listed oldest first; a later file repeating whole orders of an
    earlier one (the 9 days the two Online Retail files share) keeps the first copy.
    """
    if key is None or len(frames) < 2:
        return frames
    seen: pl.Series | None = None
    out = []
    for df in frames:
        if key not in df.columns:
            raise DataError(f"dedupe_overlap_on: column '{key}' is not a canonical or kept column")
        if seen is not None:
            hit = pl.col(key).is_in(seen.implode()) & pl.col(DROP).is_null()
            df = df.with_columns(pl.when(hit).then(pl.lit("overlap")).otherwise(pl.col(DROP)).alias(DROP))
        keys = df.get_column(key).drop_nulls().unique()
        seen = keys if seen is None else pl.concat([seen, keys]).unique()
        out.append(df)
    return out


def mark_row_drops(df: pl.DataFrame, spec: DataSpec) -> pl.DataFrame:
    """Fill `_drop` with the first row-level reason that applies (per batch)."""
    c: CleaningSpec = spec.cleaning
    checks: list[tuple[str, pl.Expr]] = []
    for i, f in enumerate(spec.filters):
        checks.append(("filter", ~condition_expr(f, df.columns, f"filters.{i}")))
    if c.drop_missing_user:
        checks.append(("missing_user", pl.col("user_id").is_null()))
    non_product = pl.col("item_id").is_null() | pl.col("item_id").is_in(c.non_product_items)
    for p in c.non_product_patterns:
        non_product = non_product | pl.col("item_id").str.contains(p).fill_null(False)
    checks.append(("non_product", non_product))
    # a missing price or quantity is bad only where the source has that column: a source without one (a
    # sequences file, a click log) says nothing about price, and its rows are not all "non-positive"
    def missing(column: str) -> pl.Expr:
        mapping = [i for i, src in enumerate(spec.sources) if column in src.mapped_columns()]
        return pl.col(column).is_null() & pl.col(SOURCE).is_in(mapping)

    if c.drop_non_positive_price:
        checks.append(("non_positive_price", missing("price") | (pl.col("price") <= 0)))
    if c.drop_non_positive_quantity:
        checks.append(("non_positive_quantity", missing("quantity") | (pl.col("quantity") <= 0)))
    if c.max_quantity is not None:
        checks.append(("quantity_outlier", pl.col("quantity") > c.max_quantity))
    reason = pl.lit(None, dtype=pl.String)
    for name, cond in reversed(checks):
        reason = pl.when(cond.fill_null(False)).then(pl.lit(name)).otherwise(reason)
    return df.with_columns(pl.coalesce(pl.col(DROP), reason).alias(DROP))


def finalize_user_events(df: pl.DataFrame, spec: DataSpec) -> pl.DataFrame:
    """Mark exact duplicates and link returns; needs every row of each user present."""
    c = spec.cleaning
    content = [col for col in df.columns if col not in (SOURCE, DROP, FLIPPED, "linked_order_id")]
    df = df.sort([SOURCE, "ts"], maintain_order=True)
    if c.drop_duplicates:
        kept = pl.col(DROP).is_null()
        # Null for dropped rows, so only kept rows compete to be the first copy.
        first = pl.when(kept).then(pl.struct(content)).is_first_distinct()
        df = df.with_columns(
            pl.when(kept & ~first).then(pl.lit("duplicate")).otherwise(pl.col(DROP)).alias(DROP)
        )
    if c.link_returns:
        df = df.with_row_index("_row")
        kept = df.filter(pl.col(DROP).is_null())
        returns = kept.filter(pl.col("event") == "return").select("_row", "user_id", "item_id", "ts").sort("ts", maintain_order=True)
        # Stable sort: among purchases at the same instant, the first in file order wins.
        purchases = (
            kept.filter((pl.col("event") == "purchase") & pl.col("order_id").is_not_null())
            .select("user_id", "item_id", "ts", pl.col("order_id").alias("_bought_in"))
            .sort("ts", maintain_order=True)
        )
        if returns.height and purchases.height:
            linked = returns.join_asof(
                purchases, on="ts", by=["user_id", "item_id"], strategy="backward", check_sortedness=False
            ).filter(pl.col("_bought_in").is_not_null())
            rows = linked["_row"].cast(pl.Int64)
            col = df["linked_order_id"].scatter(rows, linked["_bought_in"]) if linked.height else df["linked_order_id"]
            df = df.with_columns(col.alias("linked_order_id"))
        df = df.drop("_row")
    return df


def _sort_key() -> list[str]:
    return ["ts", "user_id", "order_id", "item_id"]


def build_report(
    marked: pl.DataFrame, spec: DataSpec, sources: list[SourceReport], seconds: float
) -> tuple[pl.DataFrame, CleaningReport]:
    """Split a marked frame into clean events and the report that accounts for every row."""
    counts = marked.group_by(DROP).len()
    by_reason = {r: n for r, n in counts.iter_rows() if r is not None}
    order = {r: i for i, r in enumerate(DROP_REASONS)}
    dropped = dict(sorted(by_reason.items(), key=lambda kv: order.get("rule:*" if kv[0].startswith("rule:") else kv[0], 99)))
    clean = marked.filter(pl.col(DROP).is_null())
    is_return = pl.col("event") == "return"
    changed = {
        "return_quantity_made_positive": int(clean[FLIPPED].sum()),
        "return_linked_to_purchase": clean.filter(is_return & pl.col("linked_order_id").is_not_null()).height,
        "return_without_purchase_in_log": clean.filter(is_return & pl.col("linked_order_id").is_null()).height,
    }
    clean = clean.drop(DROP, SOURCE, FLIPPED).sort(_sort_key(), nulls_last=True)
    events = {str(k): int(v) for k, v in clean.group_by("event").len().sort("event").iter_rows()}
    rows_read = sum(s.rows_read for s in sources)
    report = CleaningReport(
        name=spec.name,
        sources=sources,
        rows_read=rows_read,
        rows_after_overlap=rows_read - dropped.get("overlap", 0),
        dropped=dropped,
        changed=changed,
        rows_out=clean.height,
        users=clean["user_id"].n_unique(),
        items=clean["item_id"].n_unique(),
        orders=clean["order_id"].n_unique(),
        first_ts=clean["ts"].min() if clean.height else None,
        last_ts=clean["ts"].max() if clean.height else None,
        events=events,
        fingerprint=data_fingerprint(spec, sources),
        seconds=round(seconds, 3),
    )
    return clean, report


def data_fingerprint(spec: DataSpec, sources: list[SourceReport]) -> str:
    """sha256 over the spec and the bytes of each source: same inputs, same id.

    `engine` is left out: it changes how the rows are computed, never which, and
    fingerprints written before the field existed stay valid.
    """
    h = hashlib.sha256(spec.model_dump_json(exclude={"engine"}).encode())
    for s in sources:
        h.update(f"{s.uri}:{s.sha256}".encode())
    return h.hexdigest()


def _file_sha256(uri: str) -> str | None:
    if uri.startswith("s3://"):
        return None  # the S3 ETag is not a content hash; the spec and row count stand in
    p = Path(uri.removeprefix("file://"))
    h = hashlib.sha256()
    if p.is_dir():  # an event log: its files are named by the log ids they hold, so their names stand in
        for f in sorted(p.rglob("events-*.parquet")):
            h.update(f.relative_to(p).as_posix().encode())
        return h.hexdigest()
    with p.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_events(spec: DataSpec) -> tuple[pl.DataFrame, CleaningReport]:
    """Read every source, make it canonical, clean it; return events and report."""
    t0 = time.perf_counter()
    frames, sources = [], []
    for i, src in enumerate(spec.sources):
        raw = read_source(src)
        uri = expand_uri(src.uri)
        sources.append(SourceReport(uri=uri, rows_read=raw.height, sha256=_file_sha256(uri)))
        frames.append(to_canonical(raw, src, spec, source_index=i))
    frames = mark_overlap(frames, spec.dedupe_overlap_on)
    marked = pl.concat(frames, how="diagonal_relaxed")
    marked = mark_row_drops(marked, spec)
    marked = finalize_user_events(marked, spec)
    clean, report = build_report(marked, spec, sources, time.perf_counter() - t0)
    return clean.select([*EVENT_COLUMNS, *[c for c in clean.columns if c not in EVENT_COLUMNS]]), report


def clean_frame(events: pl.DataFrame, spec: DataSpec | None = None, *, name: str = "in-memory") -> tuple[pl.DataFrame, CleaningReport]:
    """Clean an already-canonical frame (e.g. the synthetic generator's) with the same rules."""
    t0 = time.perf_counter()
    spec = spec or DataSpec(name=name, sources=[{"uri": f"memory://{name}", "columns": {"user_id": "user_id", "item_id": "item_id", "ts": "ts"}}])
    marked = events.with_columns(
        pl.lit(0, dtype=pl.Int32).alias(SOURCE), pl.lit(False).alias(FLIPPED), pl.lit(None, dtype=pl.String).alias(DROP)
    )
    marked = finalize_user_events(mark_row_drops(marked, spec), spec)
    sources = [SourceReport(uri=f"memory://{name}", rows_read=events.height, sha256=None)]
    clean, report = build_report(marked, spec, sources, time.perf_counter() - t0)
    return clean.select([*EVENT_COLUMNS, *[c for c in clean.columns if c not in EVENT_COLUMNS]]), report
