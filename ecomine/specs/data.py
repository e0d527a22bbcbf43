"""DataSpec: where an event log lives and how its columns, events and cleaning map onto canonical events.

Read by `ecomine.data` (readers, cleaning) and by `ecomine data build | profile`.
"""

from __future__ import annotations

import re
from typing import Literal, get_args

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ecomine.specs._base import StrictModel, expand_uri

__all__ = ["EventType", "CanonicalColumn", "Condition", "EventRule", "SourceSpec", "CleaningSpec", "DataSpec",
           "DEFAULT_NON_PRODUCT_ITEMS", "DEFAULT_NON_PRODUCT_PATTERNS", "SEQUENCE_COLUMNS", "EVENT_LOG_COLUMNS"]

EventType = Literal["view", "click", "cart", "purchase", "return", "review"]
CanonicalColumn = Literal[
    "user_id", "item_id", "ts", "event", "quantity", "price", "order_id", "item_text"
]

# Stock codes that are fees, postage or adjustments, not products (Online Retail
# README); the patterns catch families such as gift vouchers and DCGS samples.
DEFAULT_NON_PRODUCT_ITEMS = [
    "POST", "DOT", "M", "m", "C2", "D", "S", "AMAZONFEE", "BANK CHARGES", "CRUK",
    "PADS", "B", "TEST001", "TEST002", "ADJUST", "ADJUST2",
]
DEFAULT_NON_PRODUCT_PATTERNS = [r"^gift_\d+", r"^DCGS", r"^(?i:test)"]

# The columns a `format: sequences` file yields, each mapped to itself (ecomine.data.sequences).
SEQUENCE_COLUMNS: dict[str, str] = {"user_id": "user_id", "item_id": "item_id", "ts": "ts", "item_text": "item_text"}
# The columns of ecomine's own event log (`format: event_log`, ecomine.live.event_log), each mapped to itself.
EVENT_LOG_COLUMNS: dict[str, str] = {
    c: c for c in ("user_id", "item_id", "ts", "event", "quantity", "price", "order_id")
}


class Condition(StrictModel):
    """A predicate on one column; exactly one test is set."""

    column: str = Field(description="canonical column or kept attribute name")
    equals: str | float | int | None = None
    starts_with: str | None = None
    matches: str | None = Field(None, description="regular expression (search)")
    in_: list[str | int | float] | None = Field(None, alias="in")
    not_in: list[str | int | float] | None = None
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    is_null: bool | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    @model_validator(mode="after")
    def _one_test(self) -> Condition:
        tests = [k for k in _CONDITION_TESTS if getattr(self, k) is not None]
        if len(tests) != 1:
            raise ValueError(
                f"condition on '{self.column}' needs exactly one test of "
                f"{sorted(_alias(t) for t in _CONDITION_TESTS)}, got {sorted(_alias(t) for t in tests)}"
            )
        if self.matches is not None:
            try:
                re.compile(self.matches)
            except re.error as e:
                raise ValueError(f"matches: invalid regular expression {self.matches!r}: {e}") from None
        return self

    def describe(self) -> str:
        test = next(k for k in _CONDITION_TESTS if getattr(self, k) is not None)
        return f"{self.column} {_alias(test)} {getattr(self, test)!r}"


_CONDITION_TESTS = ("equals", "starts_with", "matches", "in_", "not_in", "gt", "ge", "lt", "le", "is_null")


def _alias(name: str) -> str:
    return "in" if name == "in_" else name


class EventRule(StrictModel):
    """`when` a condition holds, the row becomes `event`, or is dropped with a reason."""

    when: Condition
    event: EventType | None = None
    drop: str | None = Field(None, description="drop matching rows, counted under this reason")

    @model_validator(mode="after")
    def _one_action(self) -> EventRule:
        if (self.event is None) == (self.drop is None):
            raise ValueError("an event rule sets exactly one of 'event' or 'drop'")
        return self


class SourceSpec(StrictModel):
    """One input file/URI and how its columns map onto the canonical events."""

    uri: str = Field(description="path, file:// or s3:// URI; ${VAR:-default} is expanded")
    format: Literal["csv", "parquet", "jsonl", "sequences", "event_log"] | None = Field(
        None, description="inferred from the suffix when omitted (.txt: sequences); sequences: one line per user, "
        "'user_id item_id item_id ...' oldest first (ecomine.data.sequences); event_log: the folder or s3:// prefix "
        "a served app's live.log_uri writes (POST /v1/events; ecomine.live.event_log), fixed columns"
    )
    columns: dict[CanonicalColumn, str] = Field(
        default_factory=dict,
        description="canonical column -> source column (user_id, item_id and ts required; format sequences: "
        "none, its columns are user_id, item_id, ts = position in the line, item_text = attributes)",
    )
    item_attributes: str | None = Field(
        None, description="format sequences only: a JSON {item_id: [attribute ids]} path or s3:// URI whose "
        "attributes become each item's text"
    )
    keep: dict[str, str] = Field(
        default_factory=dict, description="attribute name -> source column kept beside the events"
    )
    ts_format: str | None = Field(None, description="strptime format when ts is text")
    ts_timezone: str = Field("UTC", description="time zone of naive timestamps")
    event_values: dict[str, EventType] = Field(
        default_factory=dict, description="source event value -> canonical event"
    )
    csv_separator: str = ","

    @field_validator("columns")
    @classmethod
    def _required_columns(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        fmt, uri = info.data.get("format"), str(info.data.get("uri", ""))
        if fmt == "event_log":
            if v:
                raise ValueError(f"format event_log has fixed columns ({', '.join(EVENT_LOG_COLUMNS)}); leave "
                                 "columns out")
            return v
        if fmt == "sequences" or (fmt is None and uri.lower().endswith(".txt")):
            if v:
                raise ValueError("format sequences has fixed columns (user_id, item_id, ts, item_text); leave "
                                 "columns out")
            return v
        missing = [c for c in ("user_id", "item_id", "ts") if c not in v]
        if missing:
            raise ValueError(f"columns must map {missing}")
        return v

    @model_validator(mode="after")
    def _attributes_need_sequences(self) -> SourceSpec:
        if self.item_attributes is not None and not self.is_sequences():
            raise ValueError("item_attributes applies to format sequences only")
        return self

    def is_sequences(self) -> bool:
        """A `format: sequences` file (given, or inferred from a .txt suffix)."""
        return self.format == "sequences" or (self.format is None and self.uri.lower().endswith(".txt"))

    def mapped_columns(self) -> dict[str, str]:
        """canonical column -> source column (a sequences file's are fixed: ecomine.data.sequences)."""
        if self.format == "event_log":
            return dict(EVENT_LOG_COLUMNS)
        return dict(SEQUENCE_COLUMNS) if self.is_sequences() else dict(self.columns)

    @field_validator("keep")
    @classmethod
    def _keep_not_canonical(cls, v: dict[str, str]) -> dict[str, str]:
        clash = sorted(set(v) & set(get_args(CanonicalColumn)) | ({"linked_order_id"} & set(v)))
        if clash:
            raise ValueError(f"keep names clash with canonical columns {clash}")
        return v

    def resolved_format(self) -> str:
        if self.format:
            return self.format
        suffix = expand_uri(self.uri).rsplit(".", 1)[-1].lower()
        if suffix in ("csv", "parquet", "jsonl"):
            return suffix
        if suffix == "txt":
            return "sequences"
        if suffix in ("ndjson", "json"):
            return "jsonl"
        raise ValueError(f"cannot infer format of {self.uri!r}; set 'format'")


class CleaningSpec(StrictModel):
    """What cleaning drops or changes; every row it touches is counted by reason."""

    drop_missing_user: bool = True
    drop_duplicates: bool = Field(True, description="exact duplicate event rows")
    non_product_items: list[str] = Field(default_factory=lambda: list(DEFAULT_NON_PRODUCT_ITEMS))
    non_product_patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_NON_PRODUCT_PATTERNS))
    drop_non_positive_price: bool = True
    drop_non_positive_quantity: bool = Field(
        True, description="after return quantities are made positive"
    )
    max_quantity: int | None = Field(
        10_000, ge=1, description="lines above this many units are outliers (null: keep all)"
    )
    link_returns: bool = Field(True, description="tie each return to the purchase it cancels")

    @field_validator("non_product_patterns")
    @classmethod
    def _patterns_compile(cls, v: list[str]) -> list[str]:
        for p in v:
            try:
                re.compile(p)
            except re.error as e:
                raise ValueError(f"invalid regular expression {p!r}: {e}") from None
        return v


class DataSpec(StrictModel):
    """Where the events come from and how to make them canonical and clean."""

    kind: Literal["data"] = "data"
    name: str = "events"
    sources: list[SourceSpec] = Field(min_length=1)
    default_event: EventType = Field("purchase", description="event of rows no rule/column sets")
    event_rules: list[EventRule] = Field(default_factory=list, description="first match wins")
    dedupe_overlap_on: str | None = Field(
        None,
        description="column (e.g. order_id): rows of a key already present in an earlier "
        "source are dropped (files that overlap in time)",
    )
    filters: list[Condition] = Field(
        default_factory=list, description="rows must satisfy all of these"
    )
    cleaning: CleaningSpec = Field(default_factory=CleaningSpec)
    engine: Literal["local", "ray"] = Field(
        "local",
        description="local: polars in this process; ray: the same cleaning through Ray Data "
        "(ecomine.data.distributed), for logs that outgrow one machine (same output)",
    )
