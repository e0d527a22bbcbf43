"""The live-events part of the HTTP contract: `POST /v1/events` (a batch of user events) and its answer.

Sits in ``ecomine.api`` beside ``schema`` (whose strict field types it reuses): the events a
shop's services send as users act - view, click, cart, purchase, return - for the online
history store (``ecomine.live``) that recommendations read and the event log that retraining
reads. Only pydantic: the client builds these without Ray or torch.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated, Literal, get_args

from pydantic import BeforeValidator, Field, StringConstraints, field_validator

from ecomine.api.schema import ItemId, Price, Timestamp, UserId, _Request, _Response, _whole_number

__all__ = ["EVENT_KINDS", "EventKind", "HISTORY_KINDS", "HARD_MAX_EVENTS", "MAX_CLOCK_SKEW", "Event", "EventsRequest",
           "EventsResponse"]

EventKind = Literal["view", "click", "cart", "purchase", "return"]
EVENT_KINDS: tuple[str, ...] = get_args(EventKind)
# what a user's live history holds by default (serve's live.history_events, monitor --events): returns are logged only
HISTORY_KINDS: tuple[str, ...] = ("view", "click", "cart", "purchase")
HARD_MAX_EVENTS = 1000  # events in one call
MAX_CLOCK_SKEW = timedelta(minutes=10)  # a `ts` further in the future than this is refused

EventId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
# the bounds inside the type, so the OpenAPI document carries them into the non-null branch
Quantity = Annotated[int, Field(strict=True, ge=1, le=1_000_000), BeforeValidator(_whole_number)]


class Event(_Request):
    """One thing one user did to one item."""

    user_id: UserId
    item_id: ItemId
    event: EventKind
    event_id: EventId | None = Field(
        None, description="the caller's id of this event: a retry with the same id is stored once (idempotency)"
    )
    ts: Timestamp | None = Field(None, description="when it happened, ISO 8601 (default: when it arrives)")
    quantity: Quantity | None = None
    price: Price | None = Field(None, description="unit price")
    order_id: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None

    @field_validator("ts")
    @classmethod
    def _not_in_the_future(cls, v: datetime | None) -> datetime | None:
        if v is None:
            return v
        when = v if v.tzinfo is not None else v.replace(tzinfo=timezone.utc)
        if when > datetime.now(timezone.utc) + MAX_CLOCK_SKEW:
            raise ValueError(f"{v.isoformat()} is in the future (more than {MAX_CLOCK_SKEW} ahead of the server's clock)")
        return when


class EventsRequest(_Request):
    """POST /v1/events: a batch of events, stored all or none."""

    events: list[Event] = Field(min_length=1, max_length=HARD_MAX_EVENTS)


class EventsResponse(_Response):
    accepted: int = Field(description="events stored now (durably, when the answer is 2xx)")
    duplicates: int = Field(description="events whose event_id was stored before: not stored again")
    unknown_items: list[str] = Field(
        default_factory=list, description="item ids the served recommender does not know (stored all the same)"
    )
    items_checked: bool = Field(
        True, description="false when the recommender could not be asked which items it knows (unknown_items empty)")
    request_id: str | None = None
