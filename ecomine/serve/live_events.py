"""Live user events in an ingress replica: ``POST /v1/events`` into the history store, drained into the event log.

Sits in ``ecomine.serve`` under the ingress (``serve.ingress`` owns one ``LiveEvents`` per replica
when ``args.live.store`` is not ``off``) and over ``ecomine.live`` (the store, the event log).
``serve.histories`` reads the same store for ``/v1/recommend`` and ``/v1/insights``.

The store's keys are the users' ids hashed with a salt the store itself keeps (the first one
stored: the app's ``$ECOMINE_USER_HASH_SALT`` when set, else a random one), so every replica and
every restart finds the same histories. A store that cannot take or give events is a 503 with
``Retry-After`` (``StoreUnavailable``), never a 500; the batch is then stored whole or not at all.

Writes are group commits (``serve.batching.Batcher``, as the model arms batch their forward
passes): the calls that arrive while the store writes one group are written together in the
next, in one thread hop and one store write (one SQLite transaction and fsync, one Redis
round trip), up to ``live.commit_events`` events (a bound on one transaction's lock and one
pipeline's memory; a larger call is written alone); each caller still gets its own counts and
is answered only once its events are durable. At c=1 a call is written at once.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from collections.abc import Sequence
from typing import Any, Optional

from ecomine.api.events import Event
from ecomine.live import StoreUnavailable, stored_events, user_key
from ecomine.live.store import Appended, HistoryStore
from ecomine.serve.batching import Batcher
from ecomine.serve.live_args import LiveArgs
from ecomine.serve.observability import log_event, warn_event
from ecomine.serve.router import HTTPError
from ecomine.storage import S3Options

__all__ = ["LiveEvents", "open_store"]


def open_store(args: LiveArgs) -> HistoryStore:
    """The backend ``args`` names (blocking: call it off the event loop). ValueError naming the field."""
    if args.store == "sqlite":
        from ecomine.live import SQLiteHistoryStore

        return SQLiteHistoryStore(args.path, max_len=args.max_len, dedupe_s=args.dedupe_days * 86400.0,
                                  timeout_s=args.timeout_s)
    if args.store == "redis":
        from ecomine.live import RedisHistoryStore

        url = os.environ.get(args.redis_url_env)
        if not url:
            raise ValueError(f"live.redis_url_env: ${args.redis_url_env} is unset; set it to the redis:// URL")
        return RedisHistoryStore(url, max_len=args.max_len, dedupe_s=args.dedupe_days * 86400.0,
                                 ttl_s=args.ttl_days * 86400.0, prefix=args.redis_prefix, timeout_s=args.timeout_s)
    raise ValueError(f"live.store: {args.store!r} opens no store")


class LiveEvents:
    """One replica's handle on the store, and (with ``log_uri``) its share of draining the event log."""

    def __init__(self, args: LiveArgs, store: HistoryStore, salt: Optional[str], *, app_salt: Optional[str] = None,
                 retry_after_s: int = 1, s3: Optional[S3Options] = None) -> None:
        self.args = args
        self.store = store
        self._salt = salt  # None until the store has answered (it may be down when the replica starts)
        self._app_salt = app_salt
        self.retry_after_s = retry_after_s
        self.s3 = s3
        self.owner = uuid.uuid4().hex[:12]  # this replica, as the event log's lease knows it
        self.drained = 0
        self.last_drain_error: Optional[str] = None
        self._drain_task: Optional[asyncio.Task[None]] = None
        self._commits = Batcher(self._write, max_batch_size=args.commit_events, weight=len)

    @classmethod
    async def open(cls, args: LiveArgs, app_salt: Optional[str], *, retry_after_s: int = 1,
                   s3: Optional[S3Options] = None) -> LiveEvents:
        store = await asyncio.to_thread(open_store, args)
        live = cls(args, store, None, app_salt=app_salt, retry_after_s=retry_after_s, s3=s3)
        try:
            await asyncio.to_thread(live.salt)
        except StoreUnavailable as exc:  # the replica serves on; events are 503s until the store answers
            warn_event("live_store_unavailable", error=str(exc)[:300])
        if args.log_uri is not None:
            live._drain_task = asyncio.ensure_future(live._drain_forever())
        return live

    def salt(self) -> str:
        """The salt the store's keys are hashed with (blocking; raises StoreUnavailable until the store answers)."""
        if self._salt is None:
            self._salt = self.store.ensure_salt(self._app_salt or secrets.token_hex(16))
        return self._salt

    def _unavailable(self, exc: StoreUnavailable) -> HTTPError:
        return HTTPError(503, f"live events unavailable: {exc}; nothing of this batch was stored, retry it",
                         {"Retry-After": str(self.retry_after_s)})

    async def accept(self, events: Sequence[Event]) -> Appended:
        """Store the batch (and its log records); returns once it is durable. 503 when the store is not there."""
        try:
            return await self._commits.submit(events)
        except StoreUnavailable as exc:
            raise self._unavailable(exc) from exc

    async def _write(self, batches: list[Sequence[Event]]) -> list[Appended]:
        """One group commit: every queued caller's batch in one store write, off the event loop."""
        def append() -> list[Appended]:
            salt, log = self.salt(), self.args.log_uri is not None
            return self.store.append_many([stored_events(events, salt, log=log) for events in batches])

        return await asyncio.to_thread(append)

    async def history(self, user_id: str, limit: int, since: float | None = None) -> list[str]:
        """The user's live item ids of ``history_events`` kinds after ``since`` (Unix s), oldest first.
        Raises StoreUnavailable."""
        return await asyncio.to_thread(
            lambda: self.store.history(user_key(user_id, self.salt()), self.args.history_events, limit, since))

    async def drain_once(self) -> int:
        from ecomine.live.event_log import drain

        assert self.args.log_uri is not None
        # the lease outlives one batch's write (renewed per batch) but not by much: a replica that dies
        # holding it stops the log for this long (a killed replica's lease held it 60 s before)
        n = await asyncio.to_thread(drain, self.store, self.args.log_uri, owner=self.owner,
                                    lease_s=max(15.0, 3 * self.args.log_flush_s), options=self.s3)
        self.drained += n
        return n

    async def _drain_forever(self) -> None:
        while True:
            await asyncio.sleep(self.args.log_flush_s)
            try:
                n = await self.drain_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the events wait in the store's outbox; the next round retries
                self.last_drain_error = f"{type(exc).__name__}: {exc}"[:300]
                warn_event("event_log_drain_failed", error=self.last_drain_error)
                continue
            self.last_drain_error = None
            if n:
                log_event("event_log_drained", events=n, log=self.args.log_uri)

    def info(self) -> dict[str, Any]:
        return {"store": self.args.store, "log_uri": self.args.log_uri, "drained": self.drained,
                "last_drain_error": self.last_drain_error}

    def close(self) -> None:
        if self._drain_task is not None:
            self._drain_task.cancel()
        self.store.close()
