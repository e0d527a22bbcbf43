"""``POST /v1/insights``: recommendations re-ranked by expected demand and return risk.

Sits in ``ecomine.serve`` under the ingress, which validates the request and
asks the recommend arm for a candidate pool; ``compose`` then asks the demand
and risk routers (``ecomine.serve.router``) about those candidates concurrently
and multiplies the signals it got into the score. A task that is not
configured, not reachable or refuses the question is reported in ``signals``
and left out of the score, never an error of the whole answer.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any, Optional

from ecomine.api.schema import InsightsRequest
from ecomine.serve.router import HTTPError, TaskRouter, short

__all__ = ["NOT_CONFIGURED", "compose"]

NOT_CONFIGURED = "no {task} model configured (add '{task}:' to the app's args)"


def _signal(task: str, routers: dict[str, TaskRouter], answers: dict[str, Any]) -> tuple[dict[str, Any], Optional[dict[str, Any]]]:
    """``(signals entry, the answer or None)`` of one of demand / risk."""
    if task not in routers:
        return {"status": "unavailable", "detail": NOT_CONFIGURED.format(task=task)}, None
    if task not in answers:
        return {"status": "unavailable", "detail": "no candidates to score"}, None
    got = answers[task]
    if isinstance(got, BaseException):
        detail = got.detail if isinstance(got, HTTPError) else f"{type(got).__name__}: {short(got)}"
        return {"status": "error", "detail": f"{task}: {detail}"}, None
    answer = got[0]
    if "error" in answer:  # e.g. a horizon beyond the demand model's: name the field and why
        loc = [str(p) for p in answer["error"].get("loc", []) if p != "body"]
        return {"status": "error", "detail": f"{task}: {'.'.join(loc) + ': ' if loc else ''}{answer['error']['msg']}"}, None
    return {"status": "used", "model": answer.get("model")}, answer


async def compose(
    routers: dict[str, TaskRouter], req: InsightsRequest, rec: dict[str, Any], arm: str, *,
    key: str, request_id: str, user_hash: Optional[str],
) -> dict[str, Any]:
    """The ``InsightsResponse`` dict from the recommend answer ``rec`` (the candidate pool) and its arm."""
    items = rec["items"]
    ids = [i["item_id"] for i in items]
    signals: dict[str, dict[str, Any]] = {"recommend": {"status": "used", "model": rec["model"]}}
    now = datetime.now(timezone.utc)
    calls: dict[str, Any] = {}
    if ids and "demand" in routers:
        calls["demand"] = routers["demand"].call(
            "forecast", {"item_ids": ids, "horizon": req.horizon, "quantiles": [0.5]},
            key=key, request_id=request_id, user_hash=user_hash,
        )
    if ids and "risk" in routers:
        orders = [
            {"order_id": f"insight-{n}", "user_id": req.user_id, "ts": now, "country": None,
             "lines": [{"item_id": i["item_id"], "quantity": 1, "price": i.get("price")}]}
            for n, i in enumerate(items)
        ]
        calls["risk"] = routers["risk"].call("score", {"orders": orders}, key=key, request_id=request_id, user_hash=user_hash)
    answers = dict(zip(calls, await asyncio.gather(*calls.values(), return_exceptions=True)))
    demand_by_item: dict[str, float] = {}
    risk_by_item: dict[str, float] = {}
    for task in ("demand", "risk"):
        signals[task], answer = _signal(task, routers, answers)
        if answer is None:
            continue
        if task == "demand":
            demand_by_item = {f["item_id"]: float(sum(f["values"][0])) for f in answer["forecasts"]}
        else:
            risk_by_item = {ids[n]: float(r["probability"]) for n, r in enumerate(answer["results"])}
    top_demand = max(demand_by_item.values(), default=0.0)
    ranked = []
    for item in items:
        score = float(item["score"])
        expected = demand_by_item.get(item["item_id"])
        risk = risk_by_item.get(item["item_id"])
        if expected is not None and top_demand > 0:
            score *= 1.0 - req.demand_weight + req.demand_weight * max(0.0, expected) / top_demand
        if risk is not None:
            score *= 1.0 - req.risk_weight * risk
        ranked.append({
            "item_id": item["item_id"], "score": score, "recommend_score": float(item["score"]),
            "expected_demand": expected, "return_risk": risk, "title": item.get("title"),
            "category": item.get("category"), "price": item.get("price"),
        })
    ranked.sort(key=lambda r: -r["score"])
    return {
        "items": ranked[: req.k],
        "signals": signals,
        "unavailable": [t for t, s in signals.items() if s["status"] != "used"],
        "fallback": rec["fallback"],
        "fallback_reason": rec.get("fallback_reason"),
        "history_source": rec.get("history_source", "request"),
        "variant": arm,
        "request_id": request_id,
    }
