"""Cleaning through Ray Data: the data layer's scale path (same result as `cleaning.load_events`).

Sits beside `cleaning.load_events` (readers -> cleaning -> features): the same per-batch
functions (`to_canonical`, `mark_overlap`, `mark_row_drops`) run on Ray Data blocks, and
`finalize_user_events` runs on groups that each hold every row of their users.

The driver only holds what is small until the end: row counts, the unified schema, and
the set of overlap keys of earlier sources (broadcast to the later sources' blocks). The
marked rows are then collected so that `build_report` builds the report and the clean
table exactly as the in-process path does.

Tie-breaks are kept too: each row carries its position in its file, so a group is put back
in file order before `finalize_user_events` picks the first of a set of duplicates.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

import polars as pl

from ecomine import storage
from ecomine.data.cleaning import (
    CleaningReport,
    SourceReport,
    build_report,
    finalize_user_events,
    mark_overlap,
    mark_row_drops,
)
from ecomine.data.readers import DROP, SOURCE, DataError, local_source_path, read_source, to_canonical
from ecomine.data.schema import EVENT_COLUMNS, EVENT_DTYPE
from ecomine.cluster.session import ensure_ray, surfaced
from ecomine.specs import DataSpec, SourceSpec, SpecError, expand_uri
from ecomine.storage import S3Options

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs
    import ray
    import ray.data

__all__ = ["load_events_ray"]

# Working columns of this path only (never in the result): a row's position in its
# source file, and the bucket of users its group belongs to.
_ROW = "__ecomine_row"
_BUCKET = "__ecomine_bucket"
_HASH_SEED = 0x5EED
_log = logging.getLogger(__name__)


def load_events_ray(
    spec: DataSpec, *, user_buckets: int | None = None, num_cpus: float = 0.5
) -> tuple[pl.DataFrame, CleaningReport]:
    """Read, make canonical and clean every source with Ray Data; same result as `load_events`.

    `user_buckets`: how many groups the users are hashed into for the per-user step (each
    group holds all rows of its users, so `finalize_user_events` is exact on it; a few
    large groups cost far less than one call per user). Default: one per million rows
    read, at least 8. It changes the speed, never the result. `num_cpus`: logical CPUs
    asked per Ray task. Joins RAY_ADDRESS, else starts a local Ray, when none is running.
    A DataError from a block names its file; a row number in it counts from the block.
    """
    import ray

    if user_buckets is not None and user_buckets < 1:
        raise ValueError(f"load_events_ray: user_buckets={user_buckets} must be >= 1")
    t0 = time.perf_counter()
    ensure_ray()  # RAY_ADDRESS, else a fresh local Ray (cluster.session.ray_address)
    task = {"num_cpus": num_cpus}
    uris = [_uri(src) for src in spec.sources]
    key = spec.dedupe_overlap_on if len(spec.sources) > 1 else None
    with _data_context(), _data_errors():
        # 1. Read + canonical per block, every source at once; blocks stay in source
        #    then file order. Materialised: marking needs facts about whole sources.
        parts = [
            _read(src, uri, task).map_batches(
                _canonical_block, batch_format="pyarrow", fn_kwargs={"source": src, "spec": spec, "index": i}, **task
            )
            for i, (src, uri) in enumerate(zip(spec.sources, uris))
        ]
        canonical = (parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]).materialize()

        # 2. Per block: each row's position in its file ((block number, row in block)
        #    packed in one sortable integer) and what the driver needs to know: row
        #    counts, schemas and overlap keys per source.
        position = ray.remote(_position_block).options(num_returns=2, **task)
        pairs = [position.remote(ref, b, key) for b, ref in enumerate(canonical.to_arrow_refs())]
        infos: list[_BlockInfo] = ray.get([info for _, info in pairs])
        _log.debug("canonical at %.1fs", time.perf_counter() - t0)
        sources, unified, seen = _summarise(infos, uris, key)
        del canonical  # the positioned copies replace it in the object store
        buckets = user_buckets or max(8, -(-sum(s.rows_read for s in sources) // 1_000_000))

        # 3. Per block: overlap with earlier sources (their keys broadcast through the
        #    object store), row-level drops, the user's bucket.
        seen_refs = [ray.put(s.to_arrow()) if s is not None else None for s in seen]
        marked = (
            ray.data.from_arrow_refs([block for block, _ in pairs])
            .map_batches(
                _mark_block,
                batch_format="pyarrow",
                fn_kwargs={"spec": spec, "key": key, "seen": seen_refs, "unified": unified, "buckets": buckets},
                **task,
            )
            .materialize()
        )
        del pairs
        _log.debug("marked at %.1fs", time.perf_counter() - t0)

        # 4. Duplicates and return links, per group of whole users. Rows already dropped
        #    need neither step (both look only at kept rows), so they skip the shuffle.
        kept = marked.map_batches(_rows_kept, batch_format="pyarrow", fn_kwargs={"kept": True}, **task)
        dropped = marked.map_batches(_rows_kept, batch_format="pyarrow", fn_kwargs={"kept": False}, **task)
        final = kept.groupby(_BUCKET, num_partitions=buckets).map_groups(
            _finalize_group, batch_format="pyarrow", fn_kwargs={"spec": spec}, **task
        )
        tables = ray.get(final.to_arrow_refs()) + ray.get(dropped.to_arrow_refs())
        _log.debug("finalized and collected at %.1fs", time.perf_counter() - t0)

    # 5. On the driver: the report, by the same function as the in-process path.
    frames = [_from_arrow(t, unified).drop(_ROW, _BUCKET, strict=False) for t in tables if t.num_rows]
    whole = pl.concat(frames, how="vertical") if frames else unified
    clean, report = build_report(whole, spec, sources, time.perf_counter() - t0)
    return clean.select([*EVENT_COLUMNS, *[c for c in clean.columns if c not in EVENT_COLUMNS]]), report


class _BlockInfo(NamedTuple):
    source: int | None  # None: an empty block (it cannot say which source it came from)
    rows: int
    empty: pl.DataFrame  # the block's columns and dtypes, no rows
    keys: pl.Series | None  # distinct non-null overlap keys in the block


def _summarise(
    infos: list[_BlockInfo], uris: list[str], key: str | None
) -> tuple[list[SourceReport], pl.DataFrame, list[pl.Series | None]]:
    """Row counts, the unified (empty) frame and each source's earlier-sources keys."""
    n = len(uris)
    rows = [0] * n
    empties: list[list[pl.DataFrame]] = [[] for _ in range(n)]
    keys: list[list[pl.Series]] = [[] for _ in range(n)]
    for info in infos:
        if info.source is None:
            continue
        rows[info.source] += info.rows
        empties[info.source].append(info.empty)
        if info.keys is not None:
            keys[info.source].append(info.keys)
    for uri, r in zip(uris, rows):
        if r == 0:
            raise DataError(f"{uri}: file has no rows")
    if key is not None and any(key not in e.columns for es in empties for e in es):
        raise DataError(f"dedupe_overlap_on: column '{key}' is not a canonical or kept column")
    sources = [SourceReport(uri=uri, rows_read=r, sha256=_sha256(uri)) for uri, r in zip(uris, rows)]
    # What the in-process diagonal concat of the sources' frames produces.
    unified = pl.concat([e for es in empties for e in es], how="diagonal_relaxed")
    # As mark_overlap: source i is checked against the keys of sources 0..i-1.
    seen: list[pl.Series | None] = []
    acc: pl.Series | None = None
    for ks in keys:
        seen.append(acc)
        if key is not None:
            mine = pl.concat(ks).unique()
            acc = mine if acc is None else pl.concat([acc, mine]).unique()
    return sources, unified, seen


# --------------------------------------------------------------------------- block functions
# Pure functions of one Arrow block (plus small arguments); Ray runs them in its workers.


def _canonical_block(table: pa.Table, *, source: SourceSpec, spec: DataSpec, index: int) -> pa.Table:
    return _to_arrow(to_canonical(pl.from_arrow(table), source, spec, source_index=index))


def _position_block(table: pa.Table, block: int, key: str | None) -> tuple[pa.Table, _BlockInfo]:
    import numpy as np
    import pyarrow as pa

    df = _from_arrow(table)
    source = int(df[SOURCE][0]) if df.height else None
    keys = df.get_column(key).drop_nulls().unique() if key is not None and key in df.columns else None
    start = block << 32  # a block never holds 2**32 rows
    positioned = table.append_column(_ROW, pa.array(np.arange(start, start + table.num_rows, dtype=np.int64)))
    return positioned, _BlockInfo(source, df.height, df.clear(), keys)


def _mark_block(
    table: pa.Table,
    *,
    spec: DataSpec,
    key: str | None,
    seen: list[ray.ObjectRef[pa.Array] | None],
    unified: pl.DataFrame,
    buckets: int,
) -> pa.Table:
    df = _from_arrow(table)
    earlier = seen[int(df[SOURCE][0])] if df.height else None
    if key is not None and earlier is not None:
        import ray

        # The same function as in-process, the earlier sources' keys (fetched once
        # per node from the object store) standing in for the earlier frames.
        first = pl.DataFrame({key: pl.from_arrow(ray.get(earlier))})
        df = mark_overlap([first, df], key)[1]
    # Every block in the columns and dtypes of the in-process concatenation.
    df = pl.concat([unified, df], how="diagonal_relaxed").select([*unified.columns, _ROW])
    df = mark_row_drops(df, spec)
    bucket = (pl.col("user_id").hash(seed=_HASH_SEED) % buckets).cast(pl.Int64)
    return _to_arrow(df.with_columns(bucket.alias(_BUCKET)))


def _rows_kept(table: pa.Table, *, kept: bool) -> pa.Table:
    import pyarrow.compute as pc

    mask = pc.is_null(table[DROP])
    return table.filter(mask if kept else pc.invert(mask))


def _finalize_group(table: pa.Table, *, spec: DataSpec) -> pa.Table:
    # Rows arrive from several blocks in no promised order: put them back in file
    # order, which is the order the in-process path hands to finalize_user_events.
    # The working columns go before the call: finalize_user_events compares whole rows.
    df = _from_arrow(table).sort([SOURCE, _ROW]).drop(_ROW, _BUCKET)
    return _to_arrow(finalize_user_events(df, spec))


# --------------------------------------------------------------------------- helpers


def _to_arrow(df: pl.DataFrame) -> pa.Table:
    # An Enum would come back from Arrow as a Categorical; ship `event` as text.
    if "event" in df.columns:
        df = df.with_columns(pl.col("event").cast(pl.String))
    return df.to_arrow()


def _from_arrow(table: pa.Table, unified: pl.DataFrame | None = None) -> pl.DataFrame:
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    if "event" in df.columns:
        df = df.with_columns(pl.col("event").cast(pl.String).cast(EVENT_DTYPE))
    if unified is not None:
        df = df.cast({c: t for c, t in unified.schema.items() if c in df.columns and df.schema[c] != t})
    return df


def _uri(src: SourceSpec) -> str:
    try:
        return expand_uri(src.uri)
    except SpecError as e:
        raise DataError(str(e)) from None


def _sha256(uri: str) -> str | None:
    """As the in-process path: the file's sha256, None for S3 (an ETag is no content hash)."""
    if uri.startswith("s3://"):
        return None

    return storage.sha256_file(uri.removeprefix("file://"))


def _filesystem(uri: str, fmt: str) -> tuple[pafs.FileSystem | None, str]:
    """The pyarrow filesystem and path Ray Data should read `uri` with."""
    if not uri.startswith("s3://"):
        return None, str(local_source_path(uri, fmt).resolve())
    import pyarrow.fs as pafs


    o = S3Options().resolved()  # the same endpoint and credentials boto3 uses in ecomine.storage
    fs = pafs.S3FileSystem(
        access_key=o.access_key_id,
        secret_key=o.secret_access_key.get_secret_value() if o.secret_access_key else None,
        session_token=o.session_token.get_secret_value() if o.session_token else None,
        region=o.region or "us-east-1",
        endpoint_override=o.endpoint_url,
        connect_timeout=o.connect_timeout,
        request_timeout=o.read_timeout,
    )
    return fs, uri.removeprefix("s3://")


def _read(src: SourceSpec, uri: str, task: dict[str, Any]) -> ray.data.Dataset:
    import ray.data

    try:
        fmt = src.resolved_format()
    except ValueError as e:
        raise DataError(str(e)) from None
    if fmt == "sequences":
        # a line per user cannot be split into blocks by bytes: parsed once here, the mapping runs per block
        return ray.data.from_arrow(read_source(src).to_arrow())
    fs, path = _filesystem(uri, fmt)
    if fmt == "parquet":
        return ray.data.read_parquet(path, filesystem=fs, file_extensions=None, **task)
    if fmt == "csv":
        import pyarrow.csv as pacsv

        # As read_source: every column as text (coercion reports bad values by column),
        # an empty field is null, nothing else is ("NA" stays the text "NA").
        names = _csv_header(fs, path, uri, src.csv_separator)
        return ray.data.read_csv(
            path,
            filesystem=fs,
            file_extensions=None,
            parse_options=pacsv.ParseOptions(delimiter=src.csv_separator, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={n: "string" for n in names},
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                null_values=[""],
            ),
            **task,
        )
    return ray.data.read_json(path, filesystem=fs, file_extensions=None, **task)


def _csv_header(fs: pafs.FileSystem | None, path: str, uri: str, separator: str) -> list[str]:
    if fs is None:
        with open(path, "rb") as f:
            head = f.read(1 << 20)
    else:
        with fs.open_input_stream(path) as f:
            head = f.read(1 << 20)
    if b"\n" in head:
        head = head[: head.index(b"\n") + 1]
    try:
        return pl.read_csv(head, n_rows=0, infer_schema=False, separator=separator).columns
    except Exception as e:  # polars raises several types for unreadable input
        raise DataError(f"{uri}: not a valid csv file ({str(e).strip()[:160]})") from None


@contextlib.contextmanager
def _data_context() -> Iterator[None]:
    """Ray Data settings for one call (blocks in file order, see below); restored after."""
    import ray
    from ray.data import DataContext
    from ray.data.context import ShuffleStrategy

    ctx = DataContext.get_current()
    names = ("shuffle_strategy", "use_datasource_v2", "read_op_min_num_blocks", "raise_original_map_exception")
    saved = ctx.execution_options.preserve_order, {n: getattr(ctx, n) for n in names}
    ctx.execution_options.preserve_order = True
    # Tasks only: the hash shuffle first starts an aggregator actor per partition, and
    # the V2 file reader lists a single file through nested tasks; on a small machine
    # each costs more (seconds) than the work itself. Reads split into about as many
    # blocks as there are CPUs (Ray's default of 200 suits clusters), and never into
    # blocks over DataContext.target_max_block_size.
    ctx.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    ctx.use_datasource_v2 = False
    ctx.read_op_min_num_blocks = max(1, int(ray.cluster_resources().get("CPU", 1)))
    ctx.raise_original_map_exception = True  # a DataError, not "UDF failed" without it
    try:
        yield
    finally:
        ctx.execution_options.preserve_order = saved[0]
        for n, v in saved[1].items():
            setattr(ctx, n, v)


def _data_errors():
    """A DataError (or SpecError) raised inside a Ray task comes back as a DataError."""

    return surfaced((DataError, SpecError), DataError)
