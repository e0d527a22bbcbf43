"""One contract per task on the serving side: how a task's versions load, run, explain and compare.

Sits in ``ecomine.predict`` over the per-task modules (``recommend_task``, ``demand_task``,
``risk_task``) and under ``runtime`` (load, one batch), ``explain``, and Serve's traffic
(shadow agreement, the logged brief of an answer). A fourth task is one module with these
functions and one line in ``PREDICT_TASKS``; nothing above dispatches on a task's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ecomine.predict import demand_task, recommend_task, risk_task
from ecomine.predict.state import ExplainLimits, Member, ModelState

__all__ = ["PredictTask", "PREDICT_TASKS", "predict_task"]


@dataclass(frozen=True)
class PredictTask:
    """What serving, batch scoring, the retrain gate and ``ecomine explain`` need of a task."""

    name: str
    loader: str  # the default ``module:function`` turning a verified version folder into a model
    prepare: Callable[[list[Member], Any, float | None], dict[str, Any]]  # members, catalogue, threshold -> state extras
    run: Callable[[ModelState, list[Any]], list[Any]]  # one batch of jobs -> one result each
    explain: Callable[[ModelState, dict[str, Any], ExplainLimits], tuple[dict[str, Any], tuple]]
    agreement: Callable[[dict[str, Any], dict[str, Any]], float | None]  # champion vs challenger answer, in [0, 1]
    brief: Callable[[dict[str, Any]], list[Any]]  # a compact, loggable view of an answer
    explainable: Callable[[Member], str | None] | None = None  # None: a model with an ``explain`` method can
    adopt_ensemble: Callable[[ModelState, Any, float | None], None] | None = None  # an ensemble version's own extras
    # a request answered without Serve (``ecomine explain``): what the ingress would have filled in before the
    # task sees it; ValueError naming the field where the request cannot be answered offline
    offline: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    def cannot_explain(self, member: Member) -> str | None:
        """None when ``member`` can explain, else why not."""
        if self.explainable is not None:
            return self.explainable(member)
        return None if callable(getattr(member.obj, "explain", None)) else (
            f"its model ({type(member.obj).__name__}) has no explain method")


def _task(module: Any, name: str, **extra: Any) -> PredictTask:
    return PredictTask(name, module.LOADER, module.prepare, module.run, module.explain, module.agreement,
                       module.brief, **extra)


PREDICT_TASKS: dict[str, PredictTask] = {
    "recommend": _task(recommend_task, "recommend", explainable=recommend_task.explainable,
                       offline=recommend_task.offline),
    "demand": _task(demand_task, "demand"),
    "risk": _task(risk_task, "risk", adopt_ensemble=risk_task.adopt_ensemble, offline=risk_task.offline),
}


def predict_task(name: str) -> PredictTask:
    """The task's contract; ValueError naming the known tasks for any other name."""
    try:
        return PREDICT_TASKS[name]
    except KeyError:
        raise ValueError(f"task must be one of {tuple(PREDICT_TASKS)}, got {name!r}") from None
