"""The retraining gate's evidence: champion and challenger scored as served on the same newest holdout.

Sits between `ecomine.retrain.pipeline` (the pipeline) and `ecomine.retrain.gate` (the statistics):
it turns a window's prepared data into held-out units - recommend: users (their
newest purchase, predicted from everything before it), risk: the test period's
orders (labelled by any returned line) - scores each version through the serve
runtime (`runtime.load_state` / `run_jobs`: each version's own vocabulary, history
state and calibration, ensembles mixed), and hands `ecomine.retrain.gate` per-unit values
and the statistic of each metric.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ecomine.specs import PipelineSpec

__all__ = ["holdout_units", "risk_holdout", "ranks_as_served", "per_unit", "GatedTask", "GATED_TASKS", "data_summary",
           "score_versions", "gate"]


def holdout_units(prepared: Any, days: int | None = None) -> tuple[list[list[str]], list[str], list[str]]:
    """The newest holdout as raw item ids: each test user's history, newest purchase, user id.

    `days`: only users whose newest purchase falls in the last `days` before the window's
    newest event - the gate then judges what the new data changed (a feed that broke last
    month shows there, diluted by a year of clean users it would not)."""
    d = prepared.data
    items = d.vocab_items
    keep = np.arange(len(d.test_targets))
    if days is not None and d.test_target_ts is not None and len(keep):
        ts = d.test_target_ts
        keep = keep[ts >= ts.max() - np.timedelta64(days, "D")]

    def raw(ids: np.ndarray) -> list[str]:
        return [items[i - 1] for i in ids.tolist()]

    return ([raw(d.test_histories[i]) for i in keep], raw(d.test_targets[keep]),
            [d.test_users[i] for i in keep])


def ranks_as_served(state: Any, histories: list[list[str]], targets: list[str], batch: int = 256) -> np.ndarray:
    """0-based rank of each target among the version's catalogue (inf: the version cannot name it).

    Scores as the replica does (`runtime.run_jobs`: ensembles mixed, temperatures applied); a
    history with no item the version knows gets the popular-items fallback, as served.
    """
    from ecomine.predict.runtime import run_jobs
    from ecomine.train.recommend_metrics import rank_of_targets

    vocab, popular = state.extra["vocab"], state.extra["popular"]
    n = len(vocab.items) + 1
    ranks = np.full(len(targets), np.inf)
    target_ids = np.array([vocab.id_of(t) or 0 for t in targets], dtype=np.int64)
    encoded = [vocab.encode(h) for h in histories]
    pop_rank = np.full(n, np.inf)
    pop_rank[popular] = np.arange(len(popular))
    for start in range(0, len(targets), batch):
        idx = np.arange(start, min(start + batch, len(targets)))
        known = [i for i in idx if target_ids[i] > 0 and len(encoded[i])]
        for i in idx:
            if target_ids[i] > 0 and not len(encoded[i]):
                ranks[i] = pop_rank[target_ids[i]]
        if not known:
            continue
        rows = np.stack(run_jobs([(state, encoded[i]) for i in known]))
        ranks[known] = rank_of_targets(rows, target_ids[known], pad_id=0)
    return ranks


def per_unit(ranks: np.ndarray, metric: str) -> np.ndarray:
    name, _, k = metric.partition("@")
    if name == "mrr":
        return np.where(np.isfinite(ranks), 1.0 / (ranks + 1.0), 0.0)
    hit = ranks < int(k)
    if name == "hr":
        return hit.astype(np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(hit, 1.0 / np.log2(np.where(hit, ranks, 0.0) + 2.0), 0.0)


def risk_holdout(data: Any) -> tuple[list[dict[str, Any]], np.ndarray]:
    """The newest holdout of a risk window as served requests: the test split's lines grouped into
    orders, and per order whether any of its lines came back (the label the served probability predicts)."""
    import polars as pl

    keys = data.test_keys.with_columns(pl.Series("returned", data.test.labels.astype(np.int8)))
    orders, labels = [], []
    for group in keys.group_by("order_id", maintain_order=True):
        frame = group[1]
        first = frame.row(0, named=True)
        orders.append({
            "order_id": str(first["order_id"]), "user_id": None if first["user_id"] is None else str(first["user_id"]),
            "ts": first["ts"].isoformat(), "country": first.get("country"),
            "lines": [{"item_id": str(r["item_id"]), "quantity": int(r["quantity"]), "price": float(r["price"])}
                      for r in frame.iter_rows(named=True)],
        })
        labels.append(int(frame["returned"].max()))
    return orders, np.asarray(labels, dtype=np.int8)


def risk_probabilities(state: Any, orders: list[dict[str, Any]], batch: int = 512) -> np.ndarray:
    from ecomine.predict.runtime import run_jobs

    out = []
    for start in range(0, len(orders), batch):
        out.extend(run_jobs([(state, orders[start : start + batch])])[0])
    return np.asarray(out, dtype=np.float64)


def ranking_statistic(metric: str, champion: np.ndarray, challenger: np.ndarray):
    from ecomine.retrain.gate import mean_statistic

    return mean_statistic(per_unit(champion, metric), per_unit(challenger, metric))


def risk_statistic(labels: np.ndarray):
    """metric -> Statistic over orders (PR-AUC and ROC-AUC are not means: recomputed on every draw)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    def make(metric: str, champion: np.ndarray, challenger: np.ndarray):
        if metric == "brier":
            from ecomine.retrain.gate import mean_statistic

            return mean_statistic((champion - labels) ** 2, (challenger - labels) ** 2)
        score = average_precision_score if metric == "pr_auc" else roc_auc_score

        def stat(idx: np.ndarray) -> tuple[float, float]:
            y = labels[idx]
            if y.min() == y.max():  # a draw with one class only: undefined, counted as no change
                return float("nan"), float("nan")
            return float(score(y, champion[idx])), float(score(y, challenger[idx]))

        return stat

    return make


def _recommend_summary(spec: PipelineSpec, prepared: Any) -> dict[str, Any]:
    d = prepared.data
    return {"events": d.n_events, "users": d.n_users, "items": d.n_items, "test_users": len(d.test_targets),
            "holdout_users": len(holdout_units(prepared, spec.gate.holdout_days)[1])}


def _recommend_scores(states: dict[str, Any], spec: PipelineSpec, prepared: Any):
    histories, targets, _ = holdout_units(prepared, spec.gate.holdout_days)
    return {role: ranks_as_served(st, histories, targets) for role, st in states.items()}, ranking_statistic


def _risk_summary(spec: PipelineSpec, prepared: Any) -> dict[str, Any]:
    return {"train_lines": len(prepared.train), "holdout_lines": len(prepared.test),
            "holdout_orders": int(prepared.test_keys["order_id"].n_unique()), "windows": prepared.windows}


def _risk_scores(states: dict[str, Any], spec: PipelineSpec, prepared: Any):
    orders, labels = risk_holdout(prepared)
    if labels.min() == labels.max():
        raise ValueError(f"the newest holdout's {len(labels)} orders are all of one class; the gate cannot rank them")
    return {role: risk_probabilities(st, orders) for role, st in states.items()}, risk_statistic(labels)


@dataclass(frozen=True)
class GatedTask:
    """What the gate needs of a task: the window's summary for the record, and per-version held-out values
    with the statistic that aggregates them per metric."""

    summary: Callable[[PipelineSpec, Any], dict[str, Any]]
    scores: Callable[[dict[str, Any], PipelineSpec, Any], tuple[dict[str, np.ndarray], Any]]


# the tasks the gate scores (specs.pipeline.GATE_TASKS says which, before anything runs)
GATED_TASKS = {
    "recommend": GatedTask(_recommend_summary, _recommend_scores),
    "risk": GatedTask(_risk_summary, _risk_scores),
}


def data_summary(spec: PipelineSpec, prepared: Any) -> dict[str, Any]:
    """What the record says of the window's data (events, users, held-out units)."""
    return GATED_TASKS[spec.task].summary(spec, prepared)


def score_versions(registry: Any, spec: PipelineSpec, versions: dict[str, str], prepared: Any):
    """Per version, its answers on the newest holdout as served, and how to aggregate them per metric."""
    from ecomine.predict.runtime import load_state

    states = {role: load_state(registry, spec.task, [(v, 1.0)], name=f"retrain {role}") for role, v in versions.items()}
    return GATED_TASKS[spec.task].scores(states, spec, prepared)


def gate(spec: PipelineSpec, scores: dict[str, np.ndarray], statistic, level: float | None = None):
    from ecomine.retrain.gate import GateDecision, decide, paired_bootstrap
    from ecomine.specs import metric_mode

    g = spec.gate
    n = len(scores["champion"])
    if n < g.min_units:
        return GateDecision(False, f"refused: {n} held-out units in the newest holdout, fewer than gate.min_units "
                            f"({g.min_units}); too little evidence to replace the champion", None)

    def compare(metric: str):
        stat = statistic(metric, scores["champion"], scores["challenger"])
        return paired_bootstrap(metric, stat, n, mode=metric_mode(metric), resamples=g.resamples,
                                confidence=g.confidence, seed=g.seed)

    primary = compare(spec.gate_metric())
    guards = [(compare(gd.metric), gd.tolerance) for gd in spec.guards()]
    floor = (level, g.max_level_drop) if level is not None and g.max_level_drop is not None else None
    return decide(primary, guards, g.min_improvement, floor)
