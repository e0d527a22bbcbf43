"""The metric catalogue: every metric a task reports, what direction is better, and what may use it.

Sits on the ground floor in `specs`, so everything above reads the same table: a
TrainSpec's early stopping (`task_metrics`), the retrain gate (`gate_metrics`), the
default metric of each task (`DEFAULT_METRIC`), best-checkpoint and best-baseline choices,
ensemble reports and the demo (`metric_mode`). A metric is a family (`ndcg`, `pinball`)
with a direction; ranking families are asked at each cut-off k of `eval.ks`
(`ndcg@10`), and recommend's `new_` variants score with history masked. Report keys
written in upper case (`NDCG@10`) read the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Metric", "DEFAULT_METRIC", "metric_catalogue", "task_metrics", "gate_metrics", "metric_mode"]

Direction = Literal["max", "min"]

# family -> direction; the one place a metric's direction is written
_DIRECTION: dict[str, Direction] = {
    "ndcg": "max", "hr": "max", "mrr": "max",
    "pinball": "min", "wape": "min", "mase": "min", "coverage": "max",
    "roc_auc": "max", "pr_auc": "max", "brier": "min", "log_loss": "min",
    "loss": "min",
}
_RANKED = ("ndcg", "hr")  # asked at each k of eval.ks
# task -> (families a validation pass reports, families the retrain gate computes per held-out unit)
_TASKS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "recommend": (("ndcg", "hr", "mrr"), ("ndcg", "hr", "mrr")),
    "demand": (("pinball", "wape", "mase", "coverage"), ("pinball", "wape")),
    "risk": (("roc_auc", "pr_auc", "brier"), ("pr_auc", "roc_auc", "brier")),
}
DEFAULT_METRIC = {"recommend": "ndcg@10", "demand": "pinball", "risk": "pr_auc"}


@dataclass(frozen=True)
class Metric:
    """One metric of one task: its name as specs write it, its direction, and what may use it."""

    name: str
    direction: Direction
    stop: bool  # a TrainSpec may early-stop on it (a validation metric)
    gate: bool  # the retrain gate computes it per held-out unit


def _names(families: tuple[str, ...], ks: list[int]) -> list[str]:
    return [f"{f}@{k}" for f in families if f in _RANKED for k in ks] + [f for f in families if f not in _RANKED]


def metric_catalogue(task: str, ks: list[int]) -> dict[str, Metric]:
    """Every metric of `task` by name (ranking families at each k of `ks`), `loss` included."""
    reported, gated = _TASKS[task]
    gate_names = set(_names(gated, ks))
    out = {n: Metric(n, metric_mode(n), stop=True, gate=n in gate_names) for n in _names(reported, ks)}
    if task == "recommend":  # the same ranking metrics with history masked: validation only
        out.update({f"new_{n}": Metric(f"new_{n}", metric_mode(n), stop=True, gate=False) for n in list(out)})
    out["loss"] = Metric("loss", "min", stop=True, gate=False)
    return out


def task_metrics(task: str, ks: list[int]) -> set[str]:
    """Names a TrainSpec may early-stop on for `task`."""
    return {n for n, m in metric_catalogue(task, ks).items() if m.stop}


def gate_metrics(task: str, ks: list[int]) -> set[str]:
    """Metrics the gate computes per held-out unit for `task` (recommend: per user, every k of eval.ks)."""
    return {n for n, m in metric_catalogue(task, ks).items() if m.gate}


def metric_mode(metric: str) -> Direction:
    """Whether a larger value of a metric is better (`ndcg@10`, `NDCG@10`, `pr_auc`) or a smaller one (`pinball`).

    A name outside the catalogue reads as larger-is-better, as a score would."""
    family = metric.lower().removeprefix("val_").removeprefix("new_").split("@")[0]
    return _DIRECTION.get(family, "max")
