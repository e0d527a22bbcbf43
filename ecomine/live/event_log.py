"""The event log: accepted events as date-partitioned parquet under a folder or ``s3://`` prefix.

Sits in ``ecomine.live`` above ``store`` (whose outbox it drains) and below ``serve`` (each
ingress replica runs ``drain`` every ``live.log_flush_s``) and ``data.readers`` (a DataSpec
source ``format: event_log`` reads the files back, so ``ecomine retrain`` trains on them).

Layout: ``<uri>/date=YYYY-MM-DD/events-<first log id>-<last log id>.parquet``, one file per
drained batch and day, columns ``LOG_FIELDS``. Why nothing is lost or doubled:

- an event is in the store's outbox from the moment it is acknowledged (``live.store``);
- a batch is written with ``ecomine.storage`` (a temp file renamed, or one S3 PUT), so no file
  is ever partial under its final name, and only then acknowledged in the outbox;
- a drain that dies between the write and the acknowledgement leaves the records in the
  outbox: the next drain reads the same ids, so it writes the same file names again, over the
  old ones, with the same content;
- one replica at a time drains, holding the store's ``lease``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timezone

import polars as pl

from ecomine import storage
from ecomine.live.store import LOG_FIELDS, HistoryStore
from ecomine.storage import S3Options

__all__ = ["LOG_SCHEMA", "drain", "read_event_log"]

LOG_SCHEMA = {
    "event_id": pl.String, "user_id": pl.String, "item_id": pl.String, "event": pl.String,
    "ts": pl.Datetime("us", "UTC"), "quantity": pl.Int64, "price": pl.Float64, "order_id": pl.String,
}
_LEASE = "event-log"


def _safe(log_id: str) -> str:
    """A log id as part of a file name (Redis stream ids hold a '-')."""
    return log_id.replace("-", "_")


def drain(store: HistoryStore, uri: str, *, owner: str, batch: int = 10_000, lease_s: float = 60.0,
          options: S3Options | None = None) -> int:
    """Move the store's outbox into parquet under ``uri`` until it is empty; the events written.

    Returns 0 at once while another ``owner`` holds the lease. Raises ``StoreUnavailable`` or
    ``StorageError`` as they come (nothing is acknowledged that is not written)."""
    written = 0
    while store.lease(_LEASE, owner, lease_s):
        pending = store.log_pending(batch)
        if not pending:
            break
        by_day: dict[str, list[tuple[str, list]]] = defaultdict(list)
        for log_id, record in pending:
            row = json.loads(record)
            when = datetime.fromtimestamp(row[4], timezone.utc)
            day = f"{when.year:04d}-{when.month:02d}-{when.day:02d}"  # %Y does not pad years before 1000
            by_day[day].append((log_id, row))
        for day, rows in sorted(by_day.items()):
            frame = pl.DataFrame([r for _, r in rows], schema=list(LOG_FIELDS), orient="row")
            frame = frame.with_columns(pl.from_epoch(pl.col("ts"), time_unit="s").dt.replace_time_zone("UTC"))
            frame = frame.cast(LOG_SCHEMA)  # type: ignore[arg-type]
            name = f"events-{_safe(rows[0][0])}-{_safe(rows[-1][0])}.parquet"
            storage.write_parquet(f"{uri.rstrip('/')}/date={day}/{name}", frame, options=options)
        store.log_ack([log_id for log_id, _ in pending])
        written += len(pending)
    return written


def read_event_log(uri: str, *, since: datetime | None = None, options: S3Options | None = None) -> pl.DataFrame:
    """Every event under ``uri`` (those at or after ``since``), oldest first, deduplicated on ``event_id``.

    An empty or missing log is an empty frame with ``LOG_SCHEMA``. Files of days before
    ``since`` are not read."""
    root = uri.rstrip("/")
    files = [f for f in storage.list_prefix(root, options=options)
             if f.endswith(".parquet") and f.rsplit("/", 1)[-1].startswith("events-")]
    if since is not None:
        at = since.astimezone(timezone.utc)
        cut = f"date={at.year:04d}-{at.month:02d}-{at.day:02d}"
        files = [f for f in files if f.rsplit("/", 2)[-2] >= cut]
    frames = [storage.read_parquet(f, options=options) for f in files]
    if not frames:
        return pl.DataFrame(schema=LOG_SCHEMA)
    events = pl.concat([f.cast(LOG_SCHEMA) for f in frames], how="vertical")  # type: ignore[arg-type]
    if since is not None:
        events = events.filter(pl.col("ts") >= since.astimezone(timezone.utc))
    # a retried drain rewrites the same file; an id logged twice (a dedupe window passed) counts once
    with_id = events.filter(pl.col("event_id").is_not_null()).unique("event_id", keep="first", maintain_order=True)
    return pl.concat([with_id, events.filter(pl.col("event_id").is_null())]).sort("ts", maintain_order=True)
