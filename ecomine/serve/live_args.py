"""``args.live`` of a served app: where live user events go (``POST /v1/events``) and what reads them.

Sits beside ``serve.config`` (``AppArgs.live`` is a ``LiveArgs``); ``serve.live_events`` builds
the store and the event-log drain from it in each ingress replica. Ray-free.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ecomine.api.events import HISTORY_KINDS, EventKind

__all__ = ["LiveArgs"]


class LiveArgs(BaseModel):
    """The online history store and the event log. ``store: off`` (the default) leaves ``/v1/events`` a 503."""

    model_config = ConfigDict(extra="forbid")

    store: Literal["off", "sqlite", "redis"] = Field(
        "off", description="off: no /v1/events; sqlite: a file beside the app (one machine); redis: a Redis server "
        "every replica shares (production)")
    path: str = Field("live/history.sqlite", description="sqlite: the file (relative: to where `serve up` runs)")
    redis_url_env: str = Field("ECOMINE_REDIS_URL", description="redis: env variable with the redis:// URL (it may "
                               "carry a password, so it is never written in a config)")
    redis_prefix: str = Field("ecomine", min_length=1, max_length=64, description="redis: key prefix (one per app)")
    max_len: int = Field(200, ge=1, le=10_000, description="events kept per user (the newest)")
    ttl_days: float = Field(0, ge=0, description="redis: a user's history expires this long after their last "
                            "event (0: never)")
    dedupe_days: float = Field(7, gt=0, le=365, description="an event_id seen this recently is a duplicate")
    history_events: list[EventKind] = Field(
        default_factory=lambda: list(HISTORY_KINDS), min_length=1,
        description="the kinds of event a recommendation's live history holds (returns are logged, not read)")
    log_uri: str | None = Field(None, description="the event log: a folder or s3:// prefix of date-partitioned "
                                "parquet (a DataSpec source `format: event_log` reads it); none: no log")
    log_flush_s: float = Field(10.0, gt=0, le=3600, description="how often a replica drains new events into the log")
    timeout_s: float = Field(2.0, gt=0, le=60, description="longest wait for the store (then a 503)")
    commit_events: int = Field(5000, ge=1, le=100_000, description="most events in one store write: the POST /v1/events "
                               "calls that arrive while the store writes are written together next (a group commit), "
                               "up to this many events; a larger call is written alone; 1: one write per call")

    @model_validator(mode="after")
    def _fits_the_store(self) -> LiveArgs:
        if self.store != "redis" and self.ttl_days:
            raise ValueError("ttl_days applies to store: redis only")
        if self.store == "off" and self.log_uri is not None:
            raise ValueError("log_uri needs a store (sqlite or redis): the store is the log's outbox")
        return self
