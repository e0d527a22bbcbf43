"""``explain: true``: a served answer and why, for one loaded version or an ensemble.

Sits in ``ecomine.predict`` beside ``answers`` (request in, answer out) and over ``runtime``
(which scores a ``ModelState``); called by the model deployments, the colocated ingress and
``ecomine explain`` alike, so an offline explanation is the one the app would serve. The
methods are the models' own (``models.recommend_explain``: occlusion over the history;
``DemandModel.explain``: ablation of input groups; ``OrderRiskModel.explain``: integrated
gradients); each task's module (``predict.<task>_task``) applies them to what is served, and this
module checks and dispatches:

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

from ecomine.predict.ranking import Rejected
from ecomine.predict.state import ExplainLimits, ModelState
from ecomine.predict.tasks import predict_task

__all__ = ["ExplainLimits", "explain_refusal", "explain_request"]


def explain_refusal(state: ModelState) -> str | None:
    """None when every member of ``state`` can explain, else which cannot and why."""
    contract = predict_task(state.task)
    for m in state.members:
        why = contract.cannot_explain(m)
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
    return predict_task(state.task).explain(state, req, limits)
