"""A LightGBM demand forecaster: the non-neural member of a demand ensemble, as a registrable version.

Sits in `models` under the PatchTST forecaster's module (`models.demand`), whose
`load_forecaster(folder)` finds `lightgbm.json` in a version folder and serves
the model here as a `LightGBMDemandModel`; `train.demand_task` fits it
(`model.forecaster: lightgbm`) and `train.demand_eval`'s LightGBM baseline is
the same model with the evaluation's settings. A direct multi-horizon
lag-feature model: one row per (item, origin, horizon step) holding lags,
seasonal-slot values, the step and its calendar, the price; the item id is
categorical. p50 comes from an L1 booster, every other level from a quantile
booster at that level; outputs are clipped at 0 and sorted so levels never cross.

`predict` takes the PatchTST network's arguments (`past, item, future_cov,
price_rel` windows, `DemandNet.predict`), reading only the last
`history_needed(season)` periods of `past`, so the task's evaluation, the
ensemble build and serving forecast both kinds from the same origins through
the same code. Boosters are stored in LightGBM's own text format, never pickle.
`feature_groups` names the columns by the input groups `models.demand_explain`
ablates, so a LightGBM version explains its forecasts as the network does.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "LightGBMDemandConfig",
    "LightGBMForecaster",
    "LIGHTGBM_FILE",
    "history_needed",
    "window_features",
    "feature_groups",
    "fit_lightgbm_forecaster",
    "load_lightgbm_forecaster",
]

LIGHTGBM_FILE = "lightgbm.json"  # its presence marks a LightGBM version folder (`models.demand.load_forecaster`)


def _n_lags(season: int) -> int:
    return max(2 * season, 4)


def history_needed(season: int) -> int:
    """Periods of history the features read: four seasons (daily 28, weekly 4)."""
    return max(4 * season, 4, _n_lags(season))


def window_features(past: np.ndarray, item: np.ndarray, future_cov: np.ndarray, price_rel: np.ndarray,
                    season: int) -> np.ndarray:
    """Windows -> rows (window, step) of features [n * H, F]; column 0 is the item code (categorical).

    `past` [n, >= history_needed(season)] units before the origin, `item` [n] codes,
    `future_cov` [n, H, C] calendar of the forecast steps, `price_rel` [n]. Features:
    the item, the last `2 * season` lags, the last season's mean, the four seasons'
    mean and share of selling periods, the price; per step: the step, the same slot
    one season back and its mean over four seasons, the step's calendar.
    """
    past = np.asarray(past)
    n, C = past.shape
    H = future_cov.shape[1]
    need = history_needed(season)
    if C < need:
        raise ValueError(f"lightgbm features read {need} periods of history, the windows hold {C}")
    lags = past[:, ::-1][:, : _n_lags(season)]
    hist = past[:, -max(4 * season, 4):]
    steps = np.arange(H)
    slot = steps % season
    same_slot = past[:, C - season + slot]  # [n, H]
    slot_mean = np.stack([past[:, C - season * k + slot] for k in range(1, 5)], -1).mean(-1)  # [n, H]
    base = np.concatenate([
        np.asarray(item, np.float64)[:, None], lags, hist[:, -season:].mean(1, keepdims=True),
        hist.mean(1, keepdims=True), (hist > 0).mean(1, keepdims=True), np.asarray(price_rel, np.float64)[:, None],
    ], axis=1)
    rows = np.concatenate([
        np.repeat(base[:, None, :], H, axis=1),
        np.broadcast_to(steps[None, :, None], (n, H, 1)),
        same_slot[..., None], slot_mean[..., None], np.asarray(future_cov, np.float64),
    ], axis=-1)
    return rows.reshape(n * H, -1)


def feature_groups(season: int, n_cov: int) -> dict[str, np.ndarray]:
    """Columns of `window_features` by the input group `models.demand_explain` ablates, plus `step` (never
    ablated) and `context_mean` (the four seasons' mean, the reference of the seasonal columns).

    The groups partition the columns as the network's inputs are partitioned: `item` the item code;
    `recent_level` the lags, the four seasons' mean and share of selling periods; `seasonal_values`
    the last season's mean, the slot one season back and its four-season mean (the network's profile
    features); `price`; `calendar` the steps' calendar.
    """
    nl = _n_lags(season)
    last_season, context_mean, share, price, step, same_slot, slot_mean = range(nl + 1, nl + 8)
    return {
        "item": np.array([0]),
        "recent_level": np.array([*range(1, nl + 1), context_mean, share]),
        "seasonal_values": np.array([last_season, same_slot, slot_mean]),
        "price": np.array([price]),
        "calendar": np.arange(nl + 8, nl + 8 + n_cov),
        "step": np.array([step]),
        "context_mean": np.array([context_mean]),
    }


@dataclass
class LightGBMDemandConfig:
    """What rebuilds and describes a LightGBM forecaster (config.json's `model`).

    The first five fields are the panel's, as in `DemandConfig` (what serving
    reads: horizon, quantiles, freq); the rest are LightGBM's.
    """

    n_items: int
    horizon: int
    context_length: int
    quantiles: list[float]
    freq: str
    season: int  # `models.demand.season_length(freq)`, stored: this module reads no calendar
    rounds: int = 300
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 50
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    max_rows: int = 300_000
    seed: int = 0
    threads: int = 1
    forecaster: str = "lightgbm"

    def params(self, level: float) -> dict[str, Any]:
        """LightGBM parameters of the booster for quantile `level` (p50: L1)."""
        objective = {"objective": "l1"} if level == 0.5 else {"objective": "quantile", "alpha": level}
        return {**objective, "learning_rate": self.learning_rate, "num_leaves": self.num_leaves,
                "min_data_in_leaf": self.min_data_in_leaf, "feature_fraction": self.feature_fraction,
                "bagging_fraction": self.bagging_fraction, "bagging_freq": 1, "seed": self.seed,
                "num_threads": self.threads, "verbose": -1}


class LightGBMForecaster:
    """One booster per quantile level; `predict` has `DemandNet.predict`'s arguments and output."""

    def __init__(self, config: LightGBMDemandConfig, boosters: list[Any]) -> None:
        if len(boosters) != len(config.quantiles):
            raise ValueError(f"{len(boosters)} boosters for {len(config.quantiles)} quantile levels")
        self.config = config
        self.boosters = boosters

    def eval(self) -> LightGBMForecaster:
        """Nothing to switch (the torch model's `eval()`; the ensemble build calls it on every member)."""
        return self

    def predict(self, past: np.ndarray, item: np.ndarray, future_cov: np.ndarray, price_rel: np.ndarray,
                batch_size: int | None = None, device: Any = "cpu") -> np.ndarray:
        """Units quantiles [N, H, Q] (float64), >= 0 and sorted; `batch_size` and `device` are accepted and unused."""
        c = self.config
        n = len(past)
        if n == 0:
            return np.zeros((0, c.horizon, len(c.quantiles)), np.float32)
        X = window_features(past, item, future_cov, price_rel, c.season)
        return self.predict_features(X).reshape(n, future_cov.shape[1], len(c.quantiles))

    def predict_features(self, X: np.ndarray) -> np.ndarray:
        """Feature rows [m, F] (`window_features`) -> quantiles [m, Q], >= 0 and sorted (explanations feed ablated rows)."""
        out = np.stack([b.predict(X, num_threads=self.config.threads) for b in self.boosters], axis=-1)
        return np.sort(np.maximum(np.nan_to_num(out, nan=0.0), 0.0), axis=-1)

    def save(self, folder: str | Path) -> None:
        """`lightgbm.json` (levels -> booster files) and one `lightgbm_<level>.txt` per level (`Booster.save_model`)."""
        folder = Path(folder)
        files = {}
        for level, booster in zip(self.config.quantiles, self.boosters):
            name = f"lightgbm_p{level * 100:g}.txt"
            booster.save_model(str(folder / name))
            files[str(level)] = name
        (folder / LIGHTGBM_FILE).write_text(json.dumps({"boosters": files, "config": asdict(self.config)}, indent=2))


def fit_lightgbm_forecaster(config: LightGBMDemandConfig, past: np.ndarray, item: np.ndarray, future_cov: np.ndarray,
                            price_rel: np.ndarray, target: np.ndarray) -> LightGBMForecaster:
    """Fit every level's booster on training windows (target [n, H]); rows beyond `max_rows` are subsampled (seeded)."""
    import lightgbm as lgb

    X = window_features(past, item, future_cov, price_rel, config.season)
    y = np.asarray(target, np.float32).reshape(-1)
    if len(y) == 0:
        raise ValueError("lightgbm: no training windows")
    if len(y) > config.max_rows:
        keep = np.random.default_rng(config.seed).choice(len(y), config.max_rows, replace=False)
        X, y = X[keep], y[keep]
    boosters = []
    for level in config.quantiles:
        train = lgb.Dataset(X, y, categorical_feature=[0], free_raw_data=False)
        boosters.append(lgb.train(config.params(level), train, num_boost_round=config.rounds))
    return LightGBMForecaster(config, boosters)


def load_lightgbm_forecaster(folder: str | Path) -> LightGBMForecaster:
    """A folder written by `LightGBMForecaster.save` -> the forecaster (boosters from their text files)."""
    import lightgbm as lgb

    folder = Path(folder)
    meta = json.loads((folder / LIGHTGBM_FILE).read_text())
    config = LightGBMDemandConfig(**meta["config"])
    boosters = [lgb.Booster(model_file=str(folder / meta["boosters"][str(level)])) for level in config.quantiles]
    return LightGBMForecaster(config, boosters)
