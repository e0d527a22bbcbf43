"""The HTTP API of a served ecomine app (``/v1``): the task routes' request and response models.

Shared by the server (``ecomine.serve`` validates requests with them and
answers with them) and the client SDK (``ecomine.client`` builds them). Only
pydantic is imported here: no Ray, no torch, so the client installs light.

Requests forbid unknown fields (a typo such as ``exlude`` is a 422 naming it)
and take numbers and booleans strictly (``k: "10"``, ``quantity: true`` or
``price: false`` are 422s naming the field, not silently coerced; an integer is
a valid float); NaN and Infinity are refused with a message saying so.
Responses ignore unknown fields, so an older client reads a newer server.
What the operator routes answer (``/v1/models``, ``/v1/drift``, ``/healthz``) is in ``api_status``.
The caps below are hard protocol limits; a deployment's ``limits`` (see
``ecomine.serve.config.Limits``) may set tighter ones, also answered with 422.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator, model_validator

__all__ = [
    "API_PREFIX",
    "HARD_MAX_K",
    "HARD_MAX_HISTORY",
    "HARD_MAX_ITEMS",
    "HARD_MAX_HORIZON",
    "HARD_MAX_ORDERS",
    "HARD_MAX_LINES",
    "DEFAULT_HORIZON",
    "DEFAULT_LIMITS",
    "LimitsResponse",
    "ItemId",
    "UserId",
    "Variant",
    "HistorySource",
    "RecommendRequest",
    "ScoredItem",
    "HistoryContribution",
    "RecommendResponse",
    "DemandRequest",
    "ItemForecast",
    "DemandDriver",
    "DemandResponse",
    "OrderLine",
    "Order",
    "RiskRequest",
    "OrderRisk",
    "FeatureContribution",
    "TokenContribution",
    "LineExplanation",
    "RiskResponse",
    "InsightsRequest",
    "InsightItem",
    "Signal",
    "InsightsResponse",
    "ErrorDetail",
    "ErrorResponse",
]

API_PREFIX = "/v1"
HARD_MAX_K = 1000
HARD_MAX_HISTORY = 10_000
HARD_MAX_ITEMS = 10_000  # item ids in one demand call, or in one exclude list
HARD_MAX_HORIZON = 366
HARD_MAX_ORDERS = 1000
HARD_MAX_LINES = 1000
DEFAULT_HORIZON = 7  # periods of a demand forecast when neither the request nor the served model says
# A deployment's per-request limits when its config sets none (ecomine.serve.config.Limits; the SDK's
# defaults, e.g. demand_chunked's chunk, come from the same numbers or from GET /v1/limits).
DEFAULT_LIMITS = {
    "max_body_bytes": 262_144, "max_history": 500, "max_k": 100, "max_exclude": 1000, "max_demand_items": 200,
    "max_horizon": 90, "max_orders": 100, "max_order_lines": 200,
    "max_events": 500,
    # explain: true - how much of an answer is explained (each bounds one batched forward pass)
    "max_explain_items": 10, "max_explain_history": 50, "max_explain_contributors": 3, "max_explain_lines": 20,
    # words cost an integrated-gradient pass through the text encoder: 50-330x a plain call on a
    # CPU (benchmarks/explain_faithfulness_risk.py); 0 attributes the line's text as a whole
    "max_explain_tokens": 0,
}

ItemId = Annotated[str, StringConstraints(min_length=1, max_length=256)]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Variant = Literal["champion", "challenger"]
HistorySource = Literal["request", "live", "live+snapshot", "snapshot", "none"]  # serve.histories.Resolved.source


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _no_nan(value: object) -> object:
    """Before the bounds are checked (whose message would say 'greater than or equal to 0')."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{'NaN' if math.isnan(value) else 'Infinity'} is not allowed: give a finite number")
    return value


# strict: a JSON number only (an integer is fine), never a bool or a string; finite
Number = Annotated[float, BeforeValidator(_no_nan), Field(strict=True)]
def _whole_number(value: object) -> object:
    """JSON has one number type: `10.0` is the integer 10 (as JSON Schema's "integer" says), `10.5` is not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Count = Annotated[int, BeforeValidator(_whole_number), Field(strict=True)]  # a JSON integer: not "10", not true
# Bounds inside a nested type go before the validator: after it, pydantic writes them into the
# OpenAPI document as raw `ge`/`gt` keys instead of `minimum`/`exclusiveMinimum`.
Price = Annotated[float, Field(strict=True, ge=0), BeforeValidator(_no_nan)]
Horizon = Annotated[int, Field(strict=True, ge=1, le=HARD_MAX_HORIZON), BeforeValidator(_whole_number)]


def _timestamp_text(value: object) -> object:
    """A time is an ISO 8601 string: a bare number (`ts: 0` would be 1970-01-01) is refused, not guessed."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f"{value!r} is a number; give the time as an ISO 8601 string, e.g. '2026-12-06T10:00:00Z'")
    return value


Timestamp = Annotated[datetime, BeforeValidator(_timestamp_text)]
Candidates = Annotated[int, Field(strict=True, ge=1, le=HARD_MAX_K), BeforeValidator(_whole_number)]
Quantile = Annotated[float, Field(strict=True, gt=0, lt=1), BeforeValidator(_no_nan)]


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore")


# --------------------------------------------------------------------------- recommend


class _WhoAndWhat(_Request):
    """Fields shared by /v1/recommend and /v1/insights."""

    # the OpenAPI document says what `_someone` checks: a user id or a history (not null), or both
    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": [
        {"required": ["user_id"], "properties": {"user_id": {"type": "string"}}},
        {"required": ["history"], "properties": {"history": {"type": "array"}}},
    ]})

    user_id: UserId | None = Field(
        None,
        description="whose stored history to use (the app's users table) and the sticky A/B routing key",
    )
    history: list[ItemId] | None = Field(
        None,
        max_length=HARD_MAX_HISTORY,
        description="item ids, oldest first; when given it is used instead of the stored history",
    )
    k: Count = Field(10, ge=1, le=HARD_MAX_K, description="how many items to return")
    exclude: list[ItemId] = Field(
        default_factory=list, max_length=HARD_MAX_ITEMS, description="item ids never to return"
    )
    exclude_history: bool | None = Field(
        None, strict=True, description="leave out items already in the history (default: the model's training spec)"
    )
    categories: list[Annotated[str, StringConstraints(min_length=1, max_length=256)]] | None = Field(
        None, min_length=1, max_length=1000, description="only items of these categories (needs a catalogue)"
    )

    @model_validator(mode="after")
    def _someone(self) -> _WhoAndWhat:
        if self.user_id is None and self.history is None:
            raise ValueError("give user_id or history (or both)")
        return self


Explain = Annotated[bool, Field(strict=True)]
_EXPLAIN = "also say why (see the response's explanation fields); costs one extra batched pass; a model that cannot explain is a 422"


class RecommendRequest(_WhoAndWhat):
    """POST /v1/recommend: the next items a user is likely to want."""

    explain: Explain = Field(False, description=_EXPLAIN + " (the popularity baseline, a fallback answer: nothing to explain)")


class HistoryContribution(_Response):
    """One history item's part in a recommendation: what removing it from the history takes off the score."""

    item_id: str
    contribution: float = Field(description="score with the history minus score without this item (probability units)")
    title: str | None = None


class ScoredItem(_Response):
    item_id: str
    score: float = Field(
        description="probability of being the next item (softmax over the catalogue; an ensemble's weighted "
        "mean); in a fallback answer, the popularity rank scaled to (0, 1]"
    )
    title: str | None = None
    category: str | None = None
    price: float | None = None
    because: list[HistoryContribution] | None = Field(
        None, description="explain: the history items that raised this item's score most (occlusion), largest first"
    )


class RecommendResponse(_Response):
    items: list[ScoredItem]
    model: str = Field(description="what answered: 'recommend/<version>' or 'ensemble(...)'")
    versions: list[str] = Field(description="registry version ids that produced the answer")
    variant: Variant = "champion"
    fallback: bool = Field(False, description="true when the answer is popular items, not a personal ranking")
    fallback_reason: str | None = None
    unknown_items: list[str] = Field(default_factory=list, description="history items the model does not know (ignored)")
    history_source: HistorySource = Field(
        "request", description="the history scored: the request's, the user's live events (POST /v1/events) "
        "after or without their training snapshot, the snapshot alone, or none (popular items)")
    explanation: str | None = Field(None, description="explain: how the contributions were computed, or why there are none")
    request_id: str = ""


# --------------------------------------------------------------------------- demand


class DemandRequest(_Request):
    """POST /v1/demand: quantile forecasts of units sold per period."""

    item_ids: list[ItemId] = Field(min_length=1, max_length=HARD_MAX_ITEMS)
    horizon: Horizon | None = Field(
        None, description="periods ahead (the model's frequency); default: the served model's own horizon",
    )
    quantiles: list[Quantile] = Field(
        default_factory=lambda: [0.1, 0.5, 0.9], min_length=1, max_length=19, description="each in (0, 1), distinct",
        json_schema_extra={"uniqueItems": True}
    )
    explain: Explain = Field(False, description=_EXPLAIN + " (the p50 drivers of each forecast the network made)")

    @field_validator("quantiles")
    @classmethod
    def _quantiles(cls, v: list[float]) -> list[float]:
        for q in v:
            if not 0.0 < q < 1.0:
                raise ValueError(f"quantile {q} is not in (0, 1)")
        if len(set(v)) != len(v):
            raise ValueError(f"quantiles must be distinct, got {v}")
        return sorted(v)


class DemandDriver(_Response):
    """One input group's part in a forecast: its exact Shapley value against the reference inputs.

    That is the p50 with the input as it is minus with it at its reference, averaged over every
    combination of the other inputs being as they are or at theirs; the drivers add up:
    ``baseline + sum(by_step) = p50``.
    """

    input: str = Field(description="recent_level, seasonal_values, calendar, price or item")
    effect: float = Field(description="mean over the horizon of this input's Shapley value on the p50 (units)")
    by_step: list[float] = Field(description="the same per period")
    reference: str = Field(description="what the input was replaced with")


class ItemForecast(_Response):
    item_id: str
    values: list[list[float]] = Field(description="[quantile][period]: one row per requested quantile, ascending")
    fallback: bool = Field(False, description="true when the model does not know the item (cold-start profile)")
    drivers: list[DemandDriver] | None = Field(
        None, description="explain: what moved this item's p50, largest |effect| first (empty for a fallback item)"
    )
    baseline: list[float] | None = Field(
        None, description="explain: the p50 per period with every input at its reference (the drivers start here)"
    )


class DemandResponse(_Response):
    quantiles: list[float]
    horizon: int
    freq: str | None = Field(None, description="period of the forecast, e.g. '1d' or '1w'")
    forecasts: list[ItemForecast]
    model: str
    versions: list[str]
    variant: Variant = "champion"
    fallback: bool = Field(False, description="true when any item got a cold-start forecast")
    request_id: str = ""


# --------------------------------------------------------------------------- risk


class OrderLine(_Request):
    item_id: ItemId
    quantity: Count = Field(1, ge=1, le=1_000_000)
    # the bound on the number itself: on the Optional it is left out of the OpenAPI document
    price: Price | None = Field(None, description="unit price; unknown when omitted")


class Order(_Request):
    order_id: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    user_id: UserId | None = None
    ts: Timestamp | None = Field(None, description="when the order was placed, ISO 8601 (default: now)")
    country: Annotated[str, StringConstraints(max_length=128)] | None = None
    lines: list[OrderLine] = Field(min_length=1, max_length=HARD_MAX_LINES)


class RiskRequest(_Request):
    """POST /v1/risk: probability that each order is returned / cancelled."""

    orders: list[Order] = Field(min_length=1, max_length=HARD_MAX_ORDERS)
    explain: Explain = Field(False, description=_EXPLAIN + " (per line: features and text tokens, integrated gradients)")


class FeatureContribution(_Response):
    name: str
    value: float | None = Field(None, description="the feature's value for this line (null: unknown)")
    contribution: float = Field(description="what it added to the line's probability (negative: lowered it)")


class TokenContribution(_Response):
    token: str
    contribution: float = Field(description="what this word of the line's text added to its probability")


class LineExplanation(_Response):
    """Why one order line scored what it did: contributions sum to probability - baseline_probability."""

    item_id: str
    probability: float = Field(description="this line's return probability")
    baseline_probability: float = Field(description="the probability of a reference line: mean features, empty text")
    features: list[FeatureContribution] = Field(description="every numeric feature, |contribution| first")
    text_contribution: float = Field(0.0, description="what the line's text as a whole added (its words split it)")
    tokens: list[TokenContribution] = Field(
        default_factory=list,
        description="the text's words with the largest |contribution| (none unless the deployment's max_explain_tokens > 0)",
    )
    unlisted_contribution: float = Field(0.0, description="what the features and words not listed add together")
    residual: float = Field(
        0.0, description="integration error: probability - baseline_probability - features - text_contribution"
    )


class OrderRisk(_Response):
    order_id: str | None = None
    probability: float
    flagged: bool = Field(description="probability >= threshold")
    threshold: float
    lines: list[LineExplanation] | None = Field(None, description="explain: per order line, what pushed it up or down")
    truncated: bool | None = Field(None, description="explain: lines beyond the deployment's max_explain_lines are not explained")


class RiskResponse(_Response):
    results: list[OrderRisk]
    model: str
    versions: list[str]
    variant: Variant = "champion"
    request_id: str = ""


# --------------------------------------------------------------------------- insights


class InsightsRequest(_WhoAndWhat):
    """POST /v1/insights: recommendations re-ranked by expected demand and return risk.

    score = recommend_score * (1 - demand_weight + demand_weight * demand_share)
                            * (1 - risk_weight * return_risk)
    where demand_share is the item's expected units over ``horizon`` divided by the
    largest among the candidates. A signal that is unavailable leaves its factor at 1.
    """

    horizon: Horizon | None = Field(
        None, description="periods of demand to add up; default: the demand model's horizon"
    )
    demand_weight: Number = Field(0.5, ge=0, le=1)
    risk_weight: Number = Field(0.5, ge=0, le=1)
    candidates: Candidates | None = Field(
        None, description="recommendations to re-rank (default: 3 * k, at least 20)"
    )


class InsightItem(_Response):
    item_id: str
    score: float
    recommend_score: float
    expected_demand: float | None = Field(None, description="median forecast units over the horizon")
    return_risk: float | None = Field(None, description="probability a one-unit order of it by this user is returned")
    title: str | None = None
    category: str | None = None
    price: float | None = None


class Signal(_Response):
    status: Literal["used", "unavailable", "error"]
    detail: str | None = None
    model: str | None = None


class InsightsResponse(_Response):
    items: list[InsightItem]
    signals: dict[str, Signal] = Field(description="recommend, demand, risk: used / unavailable / error, and why")
    unavailable: list[str] = Field(default_factory=list, description="signals that did not contribute")
    fallback: bool = False
    fallback_reason: str | None = None
    history_source: HistorySource = Field("request", description="the history the recommend signal scored, as in "
                                          "RecommendResponse")
    variant: Variant = "champion"
    request_id: str = ""


# --------------------------------------------------------------------------- limits and errors


class LimitsResponse(_Response):
    """``GET /v1/limits``: the per-request limits this deployment enforces (413 / 422 above them)."""

    max_body_bytes: int = DEFAULT_LIMITS["max_body_bytes"]
    max_history: int = DEFAULT_LIMITS["max_history"]
    max_k: int = DEFAULT_LIMITS["max_k"]
    max_exclude: int = DEFAULT_LIMITS["max_exclude"]
    max_demand_items: int = DEFAULT_LIMITS["max_demand_items"]
    max_horizon: int = DEFAULT_LIMITS["max_horizon"]
    max_orders: int = DEFAULT_LIMITS["max_orders"]
    max_order_lines: int = DEFAULT_LIMITS["max_order_lines"]
    max_events: int = DEFAULT_LIMITS["max_events"]
    max_explain_items: int = DEFAULT_LIMITS["max_explain_items"]
    max_explain_history: int = DEFAULT_LIMITS["max_explain_history"]
    max_explain_contributors: int = DEFAULT_LIMITS["max_explain_contributors"]
    max_explain_lines: int = DEFAULT_LIMITS["max_explain_lines"]
    max_explain_tokens: int = DEFAULT_LIMITS["max_explain_tokens"]


class ErrorDetail(_Response):
    loc: list[str | int]
    msg: str
    type: str


class ErrorResponse(_Response):
    """Every 4xx/5xx body: ``detail`` is a message, or a list of field errors (422)."""

    detail: str | list[ErrorDetail]
    request_id: str | None = None
