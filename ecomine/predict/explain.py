"""``explain: true``: a served answer and why, for one loaded version or an ensemble.

Sits in ``ecomine.predict`` beside ``answers`` (request in, answer out) and over ``runtime``
(which scores a ``ModelState``); called by the model deployments, the colocated ingress and
``ecomine explain`` alike, so an offline explanation is the one the app would serve. The
methods are the models' own (``models.recommend_explain``: occlusion over the history;
``DemandModel.explain``: ablation of input groups; ``OrderRiskModel.explain``: integrated
gradients); this module applies them to what is served:

- the answer is the plain call's answer (the same code path), with explanation fields added;
- an ensemble explains through its members' weighted contributions: exactly for recommend
  (occlusion of the weighted mixture is the weighted sum of the members' occlusions) and for
  demand (Shapley values are linear in the model; the answer re-sorts crossing quantiles,
  which can move a p50 off the weighted one); for risk the members' line contributions
  weighted like their probabilities (an ensemble's recalibration applies to orders, not lines);
- a model that cannot explain (the popularity baseline, a loader's object without
  ``explain``) is refused with a message naming it: the route answers 422 on ``explain``.

Explanations bypass the request batcher: one request's explanation is already a batch
(``max_explain_history`` occluded histories, every ablation of every item, every line's
integrated-gradient steps).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ecomine.predict.answers import demand_horizon, demand_job, finish_demand, finish_recommend, finish_risk, plan_recommend
from ecomine.predict.ranking import Rejected
from ecomine.predict.runtime import ModelState, run_jobs

__all__ = ["ExplainLimits", "explain_refusal", "explain_request", "explain_recommend", "explain_demand", "explain_risk"]

ExplainLimits = dict[str, int]  # the deployment's max_explain_* limits, sent with the request by the ingress


def explain_refusal(state: ModelState) -> str | None:
    """None when every member of ``state`` can explain, else which cannot and why."""
    from ecomine.models.recommend_explain import history_explainable

    for m in state.members:
        if state.task == "recommend":
            why = history_explainable(m.obj[0])
        else:
            why = None if callable(getattr(m.obj, "explain", None)) else (
                f"its model ({type(m.obj).__name__}) has no explain method")
        if why is not None:
            return f"{state.task}/{m.version} cannot explain: {why}; call without explain"
    return None


def explain_request(state: ModelState, req: dict[str, Any], limits: ExplainLimits) -> tuple[dict[str, Any], tuple]:
    """A route's request dict (what the ingress sends a model deployment) -> ``(answer, observed)``.

    ``observed`` are the arguments of the arm's drift monitor for this task (``ArmMonitor``),
    so an explained call is watched like a plain one. Raises Rejected (a 422 on the route)
    for a model that cannot explain and for what only the model can judge (a horizon, a category).
    """
    refusal = explain_refusal(state)
    if refusal is not None:
        raise Rejected(["body", "explain"], refusal)
    if state.task == "recommend":
        job, context = plan_recommend(state, req)
        answer, row = explain_recommend(state, context, job, limits)
        return answer, (len(req.get("history") or []), job, row)
    if state.task == "demand":
        req = {**req, "horizon": demand_horizon(state, req.get("horizon"))}
        forecasts = explain_demand(state, demand_job(state, req))
        return finish_demand(state, req, forecasts), (req, forecasts)
    orders = list(req["orders"])
    probs, why = explain_risk(state, orders, limits)
    answer = finish_risk(state, orders, probs)
    return {**answer, "results": [{**r, **w} for r, w in zip(answer["results"], why)]}, (orders, probs)


def _limit(limits: ExplainLimits, name: str) -> int:
    from ecomine.api.schema import DEFAULT_LIMITS

    return int(limits.get(name, DEFAULT_LIMITS[name]))


# --------------------------------------------------------------------------- recommend


def _window(state: ModelState) -> int | None:
    """The longest history window any member reads (None: a baseline reads all of it)."""
    lens = [getattr(getattr(m.obj[0], "config", None), "max_len", None) for m in state.members]
    return None if any(n is None for n in lens) else max(int(n) for n in lens)


def explain_recommend(state: ModelState, context: dict[str, Any], ids: np.ndarray | None,
                      limits: ExplainLimits) -> tuple[dict[str, Any], np.ndarray | None]:
    """The recommend answer with ``because`` on its first ``max_explain_items`` items, and the score row.

    The whole history and every occluded one are scored in one ``run_jobs`` batch (each
    member one forward pass), so the answer's scores are those the contributions subtract from.
    """
    from ecomine.models.recommend_explain import history_contributions, occlusion_histories

    if ids is None:  # a fallback answer: popular items, nothing in a history to point at
        answer = finish_recommend(state, context, None)
        return {**answer, "explanation": "a fallback answer (popular items): no history to explain it by"}, None
    window = _window(state) or len(ids)
    distinct, occluded = occlusion_histories(ids, max_len=window, max_items=_limit(limits, "max_explain_history"))
    rows = run_jobs([(state, h) for h in [ids, *occluded]])
    answer = finish_recommend(state, context, rows[0])
    vocab, catalogue = state.extra["vocab"], state.extra["catalogue"]
    n = min(len(answer["items"]), _limit(limits, "max_explain_items"))
    chosen = np.array([vocab.id_of(it["item_id"]) for it in answer["items"][:n]], dtype=np.int64)
    occ = np.stack(rows[1:]) if len(rows) > 1 else np.zeros((0, len(rows[0])))
    found = history_contributions(rows[0], occ, chosen, distinct, top=_limit(limits, "max_explain_contributors"))
    items = [dict(it) for it in answer["items"]]
    for it, because in zip(items, found):
        it["because"] = [
            {"item_id": vocab.items[h - 1], "contribution": c, "title": catalogue.describe(h).get("title")}
            for h, c in because
        ]
    tried = len(distinct)
    note = (f"occlusion: each contribution is the item's score minus its score with that history item removed "
            f"({tried} most recent distinct history item{'s' if tried != 1 else ''} tried, top {n} items explained)")
    if len(state.members) > 1:
        note += "; the ensemble's weighted mixture, i.e. its members' contributions weighted"
    return {**answer, "items": items, "explanation": note}, rows[0]


# --------------------------------------------------------------------------- demand


def explain_demand(state: ModelState, job: tuple[list[str], int, list[float]]) -> dict[str, Any]:
    """The forecast answer (as ``run_jobs`` gives it) with each item's p50 ``drivers``, members weighted."""
    items, horizon, _ = job
    answer = run_jobs([(state, job)])[0]
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


# --------------------------------------------------------------------------- risk


def explain_risk(state: ModelState, orders: list[dict[str, Any]], limits: ExplainLimits) -> tuple[list[float], list[dict[str, Any]]]:
    """The orders' probabilities (as ``run_jobs`` gives them) and per order ``{lines, truncated}``, members weighted."""
    probs = run_jobs([(state, orders)])[0]
    max_tokens = _limit(limits, "max_explain_tokens")
    per_member = [m.obj.explain(orders, max_lines=_limit(limits, "max_explain_lines"), max_tokens=max_tokens)
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
