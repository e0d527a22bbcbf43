"""The reference profile of a version being registered: its held-out inputs and the model's answers on them.

Sits in ``ecomine.train`` beside the driver: ``runner.register_trained`` calls
``write_profile`` after the task's ``save``, so every trained (and baseline)
version folder carries ``profile.json`` (``ecomine.data.drift``), which serving
and ``ecomine monitor`` compare live traffic against. The values are those of
the test split, observed through the same functions serving uses: what a
request for the same users, items or orders would carry, and what the model
answered to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ecomine.data.drift import (
    PROFILE_FILE,
    ReferenceProfile,
    build_profile,
    demand_observation,
    popularity_ranks,
    recommend_observation,
    risk_observation,
)

__all__ = ["write_profile", "recommend_profile", "demand_profile", "risk_profile", "MAX_ROWS"]

MAX_ROWS = 2000  # histories / items / orders profiled at most (a seeded sample beyond that)


def _sample(n: int, seed: int) -> np.ndarray:
    return np.arange(n) if n <= MAX_ROWS else np.sort(np.random.default_rng(seed).choice(n, MAX_ROWS, replace=False))


def _collect(task: str, observations: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    from ecomine.data.drift import FEATURES

    out: dict[str, list[np.ndarray]] = {name: [] for name in FEATURES[task]}
    for obs in observations:
        for name, v in obs.items():
            out[name].append(np.atleast_1d(np.asarray(v, dtype=np.float64)))
    return {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in out.items()}


def recommend_profile(model, train_sequences: list[np.ndarray], histories: list[np.ndarray], n_items: int,
                      *, seed: int = 0) -> ReferenceProfile:
    """Test histories (all items known) with the model's top-1 probability on each; ranks from training counts."""
    from scipy.special import softmax

    ranks = popularity_ranks(train_sequences, n_items)
    rows = [histories[i] for i in _sample(len(histories), seed) if len(histories[i])]
    top1: list[np.ndarray] = []
    for s in range(0, len(rows), 256):
        top1.append(softmax(np.asarray(model.score(rows[s : s + 256]), dtype=np.float64), axis=1).max(axis=1))
    probs = np.concatenate(top1) if top1 else np.zeros(0)
    obs = [recommend_observation(len(h), h, ranks, None) | {"top1_probability": p} for h, p in zip(rows, probs)]
    return build_profile("recommend", _collect("recommend", obs), lookups={"item_rank": ranks.tolist()},
                         source=f"{len(rows)} test histories")


def demand_profile(forecaster, units: np.ndarray, context_length: int, *, seed: int = 0) -> ReferenceProfile:
    """Every forecastable panel item (a request naming each), its recent level and the served p50 forecast."""
    known = [i for i, k in zip(forecaster.items, forecaster.known_items(list(forecaster.items))) if k]
    level_all = units[:, -context_length:].mean(axis=1)
    level = {item: float(f"{v:.6g}") for item, v in zip(forecaster.items, level_all)}
    picked = [known[i] for i in _sample(len(known), seed)]
    p50 = forecaster.forecast(picked, forecaster.max_horizon, [0.5])[:, 0, :].mean(axis=1) if picked else np.zeros(0)
    obs = demand_observation(picked, [True] * len(picked), p50, level)
    obs["unknown_item_share"] = np.zeros(len(picked))  # one request per panel item: none unknown
    return build_profile("demand", _collect("demand", [obs]), lookups={"item_level": {k: level[k] for k in known}},
                         source=f"{len(picked)} panel items, horizon {forecaster.max_horizon}")


def risk_profile(quantity: np.ndarray, price: np.ndarray, order_ids: list[str], line_probabilities: np.ndarray,
                 *, seed: int = 0) -> ReferenceProfile:
    """Test-split orders: their lines (NaN price = unknown) and 1 - prod(1 - p_line), as served."""
    orders: dict[str, list[int]] = {}
    for row, oid in enumerate(order_ids):
        orders.setdefault(oid, []).append(row)
    keys = list(orders)
    picked = [keys[i] for i in _sample(len(keys), seed)]
    as_orders = [
        {"lines": [{"quantity": float(quantity[r]), "price": None if not np.isfinite(price[r]) else float(price[r])}
                   for r in orders[k]]}
        for k in picked
    ]
    p = np.clip(line_probabilities, 0.0, 1.0 - 1e-12)
    probs = np.array([1.0 - np.exp(np.log1p(-p[orders[k]]).sum()) for k in picked])
    return build_profile("risk", _collect("risk", [risk_observation(as_orders, probs)]),
                         source=f"{len(picked)} test orders")


def write_profile(folder: Path, task, model, data, spec) -> ReferenceProfile:
    """Build the version's profile (the task's `profile`) and write ``profile.json`` into ``folder``."""
    profile = task.profile(Path(folder), model, data, spec)
    Path(folder, PROFILE_FILE).write_text(profile.dumps())
    return profile
