"""Requests in, answers out: a request as a model job, and the job's result as the answer.

Sits in ``ecomine.predict`` beside ``runtime`` (which runs one batch of jobs on a loaded
``ModelState``): ``plan_*`` / ``*_job`` turn a validated request into a job and a
context (encoded history, exclusions, category filter, fallback reason, the demand
horizon the model supports), ``finish_*`` turn the job's result into the API's answer
(top-k with metadata, flags at the threshold). Used by the model deployments, the
colocated ingress, batch scoring and the retraining gate alike, so each answers as served.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from ecomine.predict.ranking import FALLBACK_REASONS, Rejected, popular_fill, top_k

if TYPE_CHECKING:
    from ecomine.predict.state import ModelState

__all__ = ["plan_recommend", "finish_recommend", "demand_horizon", "demand_job", "finish_demand", "dated_orders", "risk_job",
           "finish_risk"]

def plan_recommend(state: ModelState, req: dict[str, Any]) -> tuple[np.ndarray | None, dict[str, Any]]:
    """Encode a recommend request: ``(job, context)``; the job (history ids) is None for a fallback.

    ``req`` is a ``RecommendRequest`` dict whose ``history`` the ingress resolved, with
    ``fallback_reason`` set when there was none to personalise from. Raises Rejected.
    """
    x = state.extra
    vocab, catalogue = x["vocab"], x["catalogue"]
    history = req.get("history") or []
    ids, unknown = vocab.split(history)  # an ItemVocab, by the loader protocol (predict.runtime)
    exclude_history = req.get("exclude_history")
    if exclude_history is None:
        exclude_history = x["exclude_history"]
    banned = [vocab.encode(exclude)] if (exclude := req.get("exclude")) else []
    if exclude_history and len(ids):
        banned.append(ids)
    reason = req.get("fallback_reason")
    if reason is None and len(ids) == 0:
        reason = "empty_history" if not history else "no_known_items"
    context = {
        "k": int(req.get("k", 10)),
        "banned": np.unique(np.concatenate(banned)) if banned else None,  # top_k / popular_fill: None bans nothing
        "allowed": catalogue.allowed(req.get("categories")),
        "reason": reason,
        "unknown": list(dict.fromkeys(unknown))[:100],
    }
    return (None if reason is not None else ids), context


def finish_recommend(state: ModelState, context: dict[str, Any], row: np.ndarray | None) -> dict[str, Any]:
    """The answer to a planned request, from its score row (None: the popular-items fallback)."""
    x = state.extra
    vocab, catalogue = x["vocab"], x["catalogue"]
    reason = context["reason"]
    if row is None:
        chosen, scores = popular_fill(x["popular"], context["k"], banned=context["banned"], allowed=context["allowed"])
    else:
        chosen, scores = top_k(row, context["k"], banned=context["banned"], allowed=context["allowed"])
    return {
        "items": [
            {"item_id": vocab.items[i - 1], "score": float(s), **catalogue.describe(int(i)), "because": None}
            for i, s in zip(chosen.tolist(), scores.tolist())
        ],
        "model": state.label,
        "versions": state.versions,
        "fallback": reason is not None,
        "fallback_code": reason,
        "fallback_reason": FALLBACK_REASONS.get(reason) if reason else None,
        "unknown_items": context["unknown"],
        "explanation": None,  # serve.explain fills it for explain: true
    }


def demand_horizon(state: ModelState, asked: int | None) -> int:
    """The periods to forecast: what the request asked, else the served model's own horizon
    (``max_horizon``; ``api.DEFAULT_HORIZON`` for a model that states none)."""
    from ecomine.api.schema import DEFAULT_HORIZON

    if asked is not None:
        return int(asked)
    return int(state.extra.get("max_horizon") or DEFAULT_HORIZON)


def demand_job(state: ModelState, req: dict[str, Any]) -> tuple[list[str], int, list[float]]:
    """The forecast job; Rejected (422) for a horizon beyond what the model was trained for, or a quantile
    outside its trained levels (answering the nearest trained level under the asked label would be wrong silently)."""
    horizon, limit = demand_horizon(state, req.get("horizon")), state.extra.get("max_horizon")
    if limit is not None and horizon > limit:
        raise Rejected(
            ["body", "horizon"],
            f"horizon {horizon} is beyond what {state.label} was trained for (at most {limit} periods of {state.extra.get('freq')})",
        )
    bounds = state.extra.get("quantile_range")
    outside = [q for q in req["quantiles"] if bounds and not bounds[0] - 1e-9 <= q <= bounds[1] + 1e-9]
    if outside:
        raise Rejected(
            ["body", "quantiles"],
            f"quantiles {outside} lie outside the levels {state.label} was trained for ({bounds[0]:g} to {bounds[1]:g}); "
            "ask within them, or train the model with those levels (model.quantiles)",
        )
    return list(req["item_ids"]), horizon, list(req["quantiles"])


def finish_demand(state: ModelState, req: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    return {
        **answer,
        "quantiles": list(req["quantiles"]),
        "horizon": demand_horizon(state, req.get("horizon")),
        "freq": state.extra.get("freq"),
        "model": state.label,
        "versions": state.versions,
        "fallback": any(f["fallback"] for f in answer["forecasts"]),
    }


def dated_orders(orders: list[dict[str, Any]], now: datetime | None = None) -> list[dict[str, Any]]:
    """Orders as the model reads them: one without ``ts`` was placed ``now`` (the API's default; the ingress,
    batch scoring and ``ecomine explain`` all date them here)."""
    now = now or datetime.now(timezone.utc)
    return [{**o, "ts": o["ts"] or now} for o in orders]


def risk_job(req: dict[str, Any]) -> list[dict[str, Any]]:
    return list(req["orders"])


def finish_risk(state: ModelState, orders: list[dict[str, Any]], probs: list[float]) -> dict[str, Any]:
    thr = float(state.extra["threshold"])
    return {
        "results": [
            {"order_id": o.get("order_id"), "probability": p, "flagged": p >= thr, "threshold": thr}
            for o, p in zip(orders, probs)
        ],
        "model": state.label,
        "versions": state.versions,
    }

