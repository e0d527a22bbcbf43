"""Evaluation reports: a trained recommender beside its baselines, both protocols.

Sits in `train` after the loop: the runner calls it on the test split once
training ends, and `ecomine evaluate VERSION` calls it again on a registered
version. Baselines are fitted on the same training sequences in the same run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ecomine.train.recommend_data import RecommendData

__all__ = ["evaluate_recommender", "best_baseline", "MODEL_NAME"]

MODEL_NAME = "ecomine (transformer)"


def evaluate_recommender(model, data: RecommendData, *, ks: list[int], split: str = "test") -> dict[str, Any]:
    """{name: {"all_items": metrics, "new_items": metrics}} for the model and every baseline."""
    from ecomine.models.recommend_baselines import fit_baselines
    from ecomine.train.recommend_metrics import evaluate_scorer

    histories = data.test_histories if split == "test" else data.valid_histories
    targets = data.test_targets if split == "test" else data.valid_targets
    n = data.n_items + 1  # + padding id 0
    results: dict[str, Any] = {}
    model.eval()
    results[MODEL_NAME] = evaluate_scorer(model, histories, targets, n_items=n, ks=ks, pad_id=0)
    baselines = fit_baselines([s for s in data.train_sequences if len(s)], n, pad_id=0)
    for name, scorer in baselines.items():
        results[name] = evaluate_scorer(scorer, histories, targets, n_items=n, ks=ks, pad_id=0)
    return results


def best_baseline(results: dict[str, Any], protocol: str, metric: str = "NDCG@10", *,
                  model_name: str = MODEL_NAME) -> tuple[str, float]:
    """The strongest baseline of a report under one protocol (for ratios in notes)."""
    scored = [
        (name, float(r[protocol][metric]))
        for name, r in results.items()
        if name != model_name and np.isfinite(r[protocol][metric])
        # the user's own history cannot recommend a new item: not a new-items baseline
        and not (protocol == "new_items" and name in ("user_history", "recent_history"))
    ]
    return max(scored, key=lambda kv: kv[1]) if scored else ("none", float("nan"))
