"""Which history a recommendation scores: the request's, the user's live events, their training snapshot.

Sits in ``ecomine.serve`` under the ingress (``/v1/recommend`` and ``/v1/insights`` call
``UserHistories.resolve``) and over ``serve.live_events`` (the live store). The snapshot is the
``recommend.users_uri`` parquet written at training time, loaded once per replica.

A user's history is their snapshot followed by their live events (both cut to ``max_history``,
newest kept): the next call after ``POST /v1/events`` reflects the event, and a user unknown at
training time gets a personal ranking after their first events. Live events no newer than the
user's newest snapshot event are left out: once a retrain reads the event log, its snapshot holds
them already, and reading both would count each twice. When the live store does not
answer, the snapshot serves alone and the answer's ``fallback_reason`` says so.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Optional

from ecomine import storage
from ecomine.live import StoreUnavailable
from ecomine.serve.live_events import LiveEvents
from ecomine.storage import S3Options

__all__ = ["Resolved", "UserHistories", "load_snapshot"]


@dataclass(frozen=True)
class Resolved:
    history: list[str]
    source: str  # request | live | live+snapshot | snapshot | none (RecommendResponse.history_source)
    fallback: Optional[str] = None  # why there is nothing to personalise from (predict.ranking.FALLBACK_REASONS)
    live_error: Optional[str] = None  # the live store did not answer: the snapshot served instead


def load_snapshot(uri: str, cap: int, s3: Optional[S3Options] = None
                  ) -> tuple[dict[str, tuple[str, ...]], dict[str, float]]:
    """``recommend.users_uri``: user id -> their newest ``cap`` item ids, oldest first, and user id -> the
    time (Unix s) of their newest snapshot event, where the table has `ts` (`ecomine data build` writes it;
    empty otherwise). Blocking."""
    import polars as pl

    table = storage.read_parquet(uri, options=s3)
    missing = [c for c in ("user_id", "items") if c not in table.columns]
    if missing:
        raise ValueError(f"recommend.users_uri: {uri} lacks column(s) {missing} (write it with `ecomine data build`)")
    histories = {
        str(user): tuple(str(i) for i in (items or [])[-cap:])
        for user, items in zip(table["user_id"].to_list(), table["items"].to_list())
    }
    ends: dict[str, float] = {}
    ts = table.schema.get("ts")
    if isinstance(ts, pl.List) and isinstance(ts.inner, pl.Datetime):
        last = table.select(pl.col("user_id").cast(pl.String), pl.col("ts").list.max().dt.epoch("us").alias("end"))
        ends = {u: e / 1e6 for u, e in zip(last["user_id"].to_list(), last["end"].to_list()) if e is not None}
    return histories, ends


class UserHistories:
    """The snapshot (or None) and the live store (or None) of one ingress replica."""

    def __init__(self, snapshot: Optional[dict[str, tuple[str, ...]]], live: Optional[LiveEvents], cap: int,
                 ends: Optional[dict[str, float]] = None) -> None:
        self.snapshot = snapshot
        self.live = live
        self.cap = cap
        self.ends = ends or {}  # user -> newest snapshot event (Unix s): live events up to it are in the snapshot

    @classmethod
    async def load(cls, users_uri: Optional[str], live: Optional[LiveEvents], cap: int,
                   s3: Optional[S3Options] = None) -> UserHistories:
        if not users_uri:
            return cls(None, live, cap)
        snapshot, ends = await asyncio.to_thread(load_snapshot, users_uri, cap, s3)
        return cls(snapshot, live, cap, ends)

    async def resolve(self, user_id: Optional[str], given: Optional[list[str]]) -> Resolved:
        if given is not None:
            return Resolved(list(given), "request")
        stored = list(self.snapshot.get(user_id or "", ())) if self.snapshot is not None else []
        live: list[str] = []
        live_error = None
        if self.live is not None and user_id:
            try:
                # after a retrain the new snapshot holds the live events it was built from: read only later ones
                live = await self.live.history(user_id, self.cap, since=self.ends.get(user_id))
            except StoreUnavailable as exc:
                live_error = str(exc)
        if live:
            return Resolved((stored + live)[-self.cap:], "live+snapshot" if stored else "live")
        if stored:
            return Resolved(stored, "snapshot", live_error=live_error)
        if self.snapshot is None and self.live is None:
            return Resolved([], "none", "no_users_table", live_error)
        return Resolved([], "none", "unknown_user", live_error)

    def info(self) -> dict[str, Any]:
        return {"snapshot_users": None if self.snapshot is None else len(self.snapshot),
                "live": None if self.live is None else self.live.info()}
