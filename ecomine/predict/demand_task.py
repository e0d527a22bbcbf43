"""Demand, as served: what a loaded forecaster holds, how a batch is forecast and explained.

Sits in ``ecomine.predict`` under ``tasks`` (the demand ``PredictTask``) and over ``state``,
``answers`` and ``combine``. Members forecast quantiles per item and period; an ensemble is the
weighted mean of their quantiles, re-sorted so they never cross (the mixture `ensemble build`
fitted); an explanation is each member's Shapley values of its input groups, weighted.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ecomine.predict import combine as ensemble_math
from ecomine.predict.answers import demand_horizon, demand_job, finish_demand
from ecomine.predict.state import ExplainLimits, Member, ModelLoadError, ModelState

__all__ = ["LOADER", "prepare", "run", "explain", "explain_demand", "agreement", "brief"]

LOADER = "ecomine.models.demand:load_forecaster"


def prepare(members: list[Member], catalogue: Any = None, threshold: float | None = None) -> dict[str, Any]:
    """The period, the longest horizon and the quantile range every member supports."""
    freqs = {getattr(m.obj, "freq", None) for m in members}
    if len(freqs) > 1:
        raise ModelLoadError(f"demand ensemble members forecast different periods {sorted(map(str, freqs))}; use one freq")
    horizons = [int(m.obj.max_horizon) for m in members if getattr(m.obj, "max_horizon", None)]
    # the ensemble answers only horizons every member was trained for, and levels inside every member's range
    levels = [list(m.obj.quantiles) for m in members if getattr(m.obj, "quantiles", None)]
    return {"freq": freqs.pop(), "max_horizon": min(horizons) if horizons else None,
            "quantile_range": (max(q[0] for q in levels), min(q[-1] for q in levels)) if levels else None}


def run(state: ModelState, jobs: list[tuple[list[str], int, list[float]]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{} for _ in jobs]
    groups: dict[tuple[int, tuple[float, ...]], list[int]] = {}
    for j, (_, horizon, qs) in enumerate(jobs):
        groups.setdefault((horizon, tuple(qs)), []).append(j)
    for (horizon, qs), idx in groups.items():
        items = [item for j in idx for item in jobs[j][0]]
        arrays, known = [], np.ones(len(items), dtype=bool)
        for m in state.members:
            arr = np.asarray(m.obj.forecast(items, horizon, list(qs)), dtype=np.float64)
            if arr.shape != (len(items), len(qs), horizon):
                raise ModelLoadError(
                    f"demand/{m.version}: forecast returned shape {arr.shape}, expected {(len(items), len(qs), horizon)}"
                )
            arrays.append(arr)
            if hasattr(m.obj, "known_items"):
                known &= np.asarray(m.obj.known_items(items), dtype=bool)
        # the weighted mean, quantiles re-sorted (a mean of quantiles can cross): the one the ensemble was fitted with
        mean = ensemble_math.combine_quantiles(arrays, state.weights, axis=1)
        start = 0
        for j in idx:
            out[j] = {
                "forecasts": [
                    {"item_id": item, "values": mean[start + r].tolist(), "fallback": not bool(known[start + r])}
                    for r, item in enumerate(jobs[j][0])
                ],
            }
            start += len(jobs[j][0])
    return out


def explain(state: ModelState, req: dict[str, Any], limits: ExplainLimits) -> tuple[dict[str, Any], tuple]:
    """A request -> (the forecasts with each item's p50 ``drivers``, the drift monitor's arguments)."""
    req = {**req, "horizon": demand_horizon(state, req.get("horizon"))}
    forecasts = explain_demand(state, demand_job(state, req))
    return finish_demand(state, req, forecasts), (req, forecasts)


def explain_demand(state: ModelState, job: tuple[list[str], int, list[float]]) -> dict[str, Any]:
    """The forecast answer (as ``run`` gives it) with each item's p50 ``drivers``, members weighted."""
    items, horizon, _ = job
    answer = run(state, [job])[0]
    per_member = [m.obj.explain(items, horizon, quantile=0.5) for m in state.members]
    forecasts = []
    for r, f in enumerate(answer["forecasts"]):
        merged: dict[str, dict[str, Any]] = {}
        baseline = np.zeros(horizon)
        for w, found in zip(state.weights, per_member):
            baseline = baseline + w * np.asarray(found[r].get("baseline", found[r]["values"]), dtype=np.float64)[:horizon]
            for d in found[r].get("drivers") or []:
                slot = merged.setdefault(d["input"], {"input": d["input"], "effect": 0.0,
                                                      "by_step": np.zeros(horizon), "reference": d["reference"]})
                slot["effect"] += w * float(d["effect"])
                slot["by_step"] = slot["by_step"] + w * np.asarray(d["by_step"], dtype=np.float64)[:horizon]
        drivers = sorted(merged.values(), key=lambda d: -abs(d["effect"]))
        forecasts.append({**f, "baseline": baseline.tolist(),
                          "drivers": [] if f["fallback"] else [{**d, "by_step": d["by_step"].tolist()} for d in drivers]})
    return {**answer, "forecasts": forecasts}


def _median_index(answer: dict[str, Any]) -> int | None:
    qs = answer.get("quantiles") or []
    return min(range(len(qs)), key=lambda i: abs(qs[i] - 0.5)) if qs else None


def agreement(champion: dict[str, Any], challenger: dict[str, Any]) -> float | None:
    """1 - WAPE of the challenger's medians against the champion's (floored at 0)."""
    mid = _median_index(champion)
    if mid is None:
        return None
    err = tot = 0.0
    other = {f["item_id"]: f for f in challenger.get("forecasts", [])}
    for f in champion.get("forecasts", []):
        g = other.get(f["item_id"])
        if g is None or len(g["values"]) <= mid:
            continue
        for x, y in zip(f["values"][mid], g["values"][mid]):
            err += abs(x - y)
            tot += abs(x)
    if tot == 0.0:
        return 1.0 if err == 0.0 else 0.0
    return max(0.0, 1.0 - err / tot)


def brief(answer: dict[str, Any]) -> list[Any]:
    """The first ten items' summed medians."""
    mid = _median_index(answer) or 0
    return [round(sum(f["values"][mid]), 3) for f in answer.get("forecasts", [])[:10]]
