"""The online history store: what each user did lately, written by `POST /v1/events`, read by recommendations.

Sits in ``ecomine.live`` (above ``api``, whose ``Event`` it stores; below ``serve``, which will
own a store per ingress replica). One small interface, ``HistoryStore``, and two backends with
the same contract (``tests/unit/live/test_store_contract.py`` runs it on both):

- ``SQLiteHistoryStore`` (``live.sqlite``): the embedded default, a file in WAL mode - no
  service to install;
- ``RedisHistoryStore`` (``live.redis``): production, one list per user appended and trimmed
  atomically by a Lua script.

Users are stored under ``user_key(user_id, salt)`` (sha256 with the app's privacy salt, as the
request logs hash them), never by their id. Each user's history is bounded (``max_len`` newest
events); an ``event_id`` seen within ``dedupe_s`` seconds is a duplicate and not stored again.
``append`` returns only once the batch is stored (all of it or, on an error, none of it).

The store is also the event log's outbox: every accepted event's full record (``StoredEvent.record``,
raw user id included) is appended, in the same atomic step as the history, to an ordered log
that ``live.event_log`` drains into parquet (``log_pending`` -> write -> ``log_ack``) under a
``lease`` that lets one replica at a time drain it. An acknowledged event is therefore in the
log exactly when it is in the store, whatever crashes between.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol

__all__ = ["StoredEvent", "Appended", "HistoryStore", "StoreUnavailable", "user_key", "stored_events", "LOG_FIELDS"]

# The fields of an event-log record, in the order the parquet files hold them (``live.event_log``).
LOG_FIELDS = ("event_id", "user_id", "item_id", "event", "ts", "quantity", "price", "order_id")


class StoreUnavailable(RuntimeError):
    """The store cannot take or give events now (server down, file locked, disk full): a 503, never a 500."""


@dataclass(frozen=True)
class StoredEvent:
    """One event as the store keeps it: the hashed user, the item, the kind, the time (Unix seconds)."""

    user_key: str
    item_id: str
    event: str
    ts: float
    event_id: str | None = None
    quantity: int | None = None
    record: str | None = None  # the event-log record (JSON of LOG_FIELDS); None: not logged


@dataclass(frozen=True)
class Appended:
    accepted: int
    duplicates: int


def user_key(user_id: str, salt: str) -> str:
    """The key a user's history is stored under: sha256(salt, user id), 32 hex characters."""
    return hashlib.sha256(f"{salt}\x00{user_id}".encode()).hexdigest()[:32]


def stored_events(events: Sequence, salt: str, now: datetime | None = None, *, log: bool = False) -> list[StoredEvent]:
    """``api.events.Event``s as the store keeps them (no ``ts``: ``now``); ``log``: with their log records."""
    at = (now or datetime.now(timezone.utc)).timestamp()
    out = []
    for e in events:
        ts = e.ts.timestamp() if e.ts else at
        record = None
        if log:
            record = json.dumps([e.event_id, e.user_id, e.item_id, e.event, ts, e.quantity,
                                 None if e.price is None else float(e.price), e.order_id], separators=(",", ":"))
        out.append(StoredEvent(user_key(e.user_id, salt), e.item_id, e.event, ts, e.event_id, e.quantity, record))
    return out


class HistoryStore(Protocol):
    """What every backend does; see the module docstring for the guarantees."""

    max_len: int

    def append(self, events: Sequence[StoredEvent]) -> Appended:
        """Store the batch (in order), skipping events whose ``event_id`` was stored before."""
        ...

    def append_many(self, batches: Sequence[Sequence[StoredEvent]]) -> list[Appended]:
        """``append`` of several callers' batches in one write (one transaction or round trip: a group commit),
        each batch's own counts in order; an error stores none of them (SQLite) or leaves each event's
        ``event_id`` claim with it (Redis), so every caller's retry is safe either way."""
        ...

    def history(self, key: str, kinds: Sequence[str] | None = None, limit: int | None = None,
                since: float | None = None) -> list[str]:
        """The user's item ids, oldest first: events of ``kinds`` (all when None) with ``ts`` after ``since``
        (Unix seconds; None: all), the newest ``limit``."""
        ...

    def log_pending(self, limit: int) -> list[tuple[str, str]]:
        """The oldest ``limit`` log records not yet acknowledged: ``(log id, record)``, in append order."""
        ...

    def log_ack(self, ids: Sequence[str]) -> None:
        """Drop these records from the log (they are in the event log's files now)."""
        ...

    def ensure_salt(self, candidate: str) -> str:
        """The salt this store's keys are hashed with: the one stored first (``candidate`` when none is)."""
        ...

    def lease(self, name: str, owner: str, ttl_s: float) -> bool:
        """Take or renew the lease ``name`` for ``owner`` for ``ttl_s`` seconds; False while another holds it."""
        ...

    def close(self) -> None: ...
