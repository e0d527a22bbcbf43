"""Risk, as served: what a loaded risk scorer holds, how a batch of orders is scored and explained.

Sits in ``ecomine.predict`` under ``tasks`` (the risk ``PredictTask``) and over ``state``,
``answers`` and ``combine``. Members score orders with probabilities; an ensemble is their
weighted mean, recalibrated by the ensemble version's Platt fit, flagged at its threshold; an
explanation is each member's per-line integrated gradients, weighted like the probabilities.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ecomine.predict import combine as ensemble_math
from ecomine.predict.answers import dated_orders, finish_risk
from ecomine.predict.state import ExplainLimits, Member, ModelLoadError, ModelState, explain_limit

__all__ = ["LOADER", "prepare", "adopt_ensemble", "run", "explain", "explain_risk", "agreement", "brief", "offline"]

LOADER = "ecomine.models.risk:load_risk_model"


def prepare(members: list[Member], catalogue: Any = None, threshold: float | None = None) -> dict[str, Any]:
    """The flagging threshold: the one asked for, else the members' weighted."""
    total = sum(m.weight for m in members)
    thr = threshold if threshold is not None else sum(
        m.weight / total * float(getattr(m.obj, "threshold", 0.5)) for m in members
    )
    return {"threshold": float(thr)}


def adopt_ensemble(state: ModelState, ensemble: Any, threshold: float | None) -> None:
    """A risk ensemble version carries its mixture's recalibration and the threshold chosen on it."""
    state.extra["recalibration"] = ensemble.recalibration
    if threshold is None and ensemble.threshold is not None:
        state.extra["threshold"] = float(ensemble.threshold)


def run(state: ModelState, jobs: list[list[dict[str, Any]]]) -> list[list[float]]:
    orders = [o for job in jobs for o in job]
    probs = []
    for m in state.members:
        p = np.asarray(m.obj.score(orders), dtype=np.float64).reshape(-1)
        if p.shape[0] != len(orders):
            raise ModelLoadError(f"risk/{m.version}: score returned {p.shape[0]} values for {len(orders)} orders")
        probs.append(np.clip(p, 0.0, 1.0))
    mean = ensemble_math.mix(probs, state.weights) if len(probs) > 1 else probs[0]
    if state.extra.get("recalibration"):
        mean = ensemble_math.apply_platt(mean, *state.extra["recalibration"])
    out, start = [], 0
    for job in jobs:
        out.append(mean[start : start + len(job)].tolist())
        start += len(job)
    return out


def explain(state: ModelState, req: dict[str, Any], limits: ExplainLimits) -> tuple[dict[str, Any], tuple]:
    """A request -> (the flags with per-line ``lines`` contributions, the drift monitor's arguments)."""
    orders = list(req["orders"])
    probs, why = explain_risk(state, orders, limits)
    answer = finish_risk(state, orders, probs)
    return {**answer, "results": [{**r, **w} for r, w in zip(answer["results"], why)]}, (orders, probs)


def explain_risk(state: ModelState, orders: list[dict[str, Any]], limits: ExplainLimits) -> tuple[list[float], list[dict[str, Any]]]:
    """The orders' probabilities (as ``run`` gives them) and per order ``{lines, truncated}``, members weighted."""
    probs = run(state, [orders])[0]
    max_tokens = explain_limit(limits, "max_explain_tokens")
    per_member = [m.obj.explain(orders, max_lines=explain_limit(limits, "max_explain_lines"), max_tokens=max_tokens)
                  for m in state.members]
    out = []
    for o in range(len(orders)):
        lines = []
        first = per_member[0][o]
        for li, line in enumerate(first["lines"]):
            feats: dict[str, dict[str, Any]] = {}
            toks: dict[str, float] = {}
            acc = {"probability": 0.0, "baseline_probability": 0.0, "text_contribution": 0.0,
                   "unlisted_contribution": 0.0, "residual": 0.0}
            for w, found in zip(state.weights, per_member):
                ml = found[o]["lines"][li]
                for key in acc:
                    acc[key] += w * float(ml.get(key, 0.0))
                for f in ml["features"]:
                    slot = feats.setdefault(f["name"], {"name": f["name"], "value": f.get("value"), "contribution": 0.0})
                    slot["contribution"] += w * float(f["contribution"])
                for t in ml["tokens"]:
                    toks[t["token"]] = toks.get(t["token"], 0.0) + w * float(t["contribution"])
            tokens = sorted(({"token": t, "contribution": c} for t, c in toks.items()), key=lambda t: -abs(t["contribution"]))
            lines.append({"item_id": line["item_id"], **acc,
                          "features": sorted(feats.values(), key=lambda f: -abs(f["contribution"])),
                          "tokens": tokens[:max_tokens]})
        out.append({"lines": lines, "truncated": bool(first.get("truncated", False))})
    return probs, out


def offline(payload: dict[str, Any]) -> dict[str, Any]:
    """A request answered without Serve: an order without ``ts`` is placed now, as the ingress dates it."""
    return {**payload, "orders": dated_orders(payload["orders"])}


def agreement(champion: dict[str, Any], challenger: dict[str, Any]) -> float | None:
    """The share of orders whose flagged decision agrees."""
    a = [r["flagged"] for r in champion.get("results", [])]
    b = [r["flagged"] for r in challenger.get("results", [])]
    if not a or len(a) != len(b):
        return None
    return sum(x == y for x, y in zip(a, b)) / len(a)


def brief(answer: dict[str, Any]) -> list[Any]:
    """The first ten probabilities."""
    return [round(r["probability"], 4) for r in answer.get("results", [])[:10]]
