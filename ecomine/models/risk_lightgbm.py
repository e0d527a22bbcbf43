"""A LightGBM risk model: the non-neural member of a risk ensemble, as a servable, registrable version.

Sits in `models` beside the encoder model (`models.risk`), whose `load_risk_model(folder)`
finds `lightgbm.json` in a version folder and serves the model here as a
`LightGBMRiskModel`; `train.risk_task` fits it (`model.classifier: lightgbm`) on the
same prepared split and raw `RISK_FEATURES` as the encoder model (and as the report's
LightGBM baseline), and calibrates it on the validation split the same way.

The booster reads the raw feature values (NaN = missing, LightGBM's own null handling)
as float32, as training stored them, so a served line and the same line in training
fall into the same bins. A served request is featurised against the version's history
state (customers/items parquet) by `risk_inputs.order_lines_frame`, exactly like the
encoder model's: unknown customers have no history, unknown items null item features.
No `explain`: Serve answers 422 for it. Stored in LightGBM's text format, never pickle.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ecomine.data.risk_examples import RISK_FEATURES
from ecomine.models.risk_calibration import Calibrator
from ecomine.models.risk_inputs import numeric_matrix, order_lines_frame, order_probabilities, validate_orders

__all__ = [
    "LIGHTGBM_FILE",
    "BOOSTER_FILE",
    "RiskLightGBMConfig",
    "RiskBooster",
    "LightGBMRiskModel",
    "fit_risk_booster",
    "save_lightgbm_risk",
    "load_lightgbm_risk",
]

LIGHTGBM_FILE = "lightgbm.json"  # its presence marks a LightGBM risk version folder (`models.risk.load_risk_model`)
BOOSTER_FILE = "lightgbm.txt"  # Booster.save_model's text format
CALIBRATION = "calibration.json"
CUSTOMERS = "customers.parquet"
ITEMS = "items.parquet"


@dataclass
class RiskLightGBMConfig:
    """The booster's settings (from the spec's `model.lightgbm` block) and what it was fitted on."""

    rounds: int = 500
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 100
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    lambda_l2: float = 1.0
    early_stopping_rounds: int = 30
    threads: int = 1
    seed: int = 0
    pos_weight: float = 1.0  # LightGBM's scale_pos_weight: the spec's model.pos_weight, as the encoder's BCE weight
    logit_offset: float = 0.0  # log(negative sample rate / positive rate) - log(pos_weight), as in `models.risk`
    features: list[str] = field(default_factory=lambda: list(RISK_FEATURES))
    best_iteration: int = 0  # the early-stopped round count (0: every round)

    def params(self) -> dict[str, Any]:
        return {
            "objective": "binary", "learning_rate": self.learning_rate, "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf, "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction, "bagging_freq": 1, "lambda_l2": self.lambda_l2,
            "scale_pos_weight": self.pos_weight, "num_threads": self.threads, "seed": self.seed,
            "deterministic": True, "verbose": -1,
        }


class RiskBooster:
    """A fitted booster over raw RISK_FEATURES: `.logits(raw [n, F]) -> [n]` corrected logits.

    What the risk task trains, validates, calibrates and evaluates in place of the
    encoder's torch module (`train.risk_task.predict_logits` dispatches on it).
    """

    def __init__(self, booster, config: RiskLightGBMConfig) -> None:
        self.booster, self.config = booster, config

    @property
    def logit_offset(self) -> float:
        return self.config.logit_offset

    def eval(self) -> RiskBooster:  # the torch module's interface, as the ensemble build calls it
        return self

    def logits(self, raw: np.ndarray) -> np.ndarray:
        """The booster's margin + the prior correction, float64 [n]."""
        x = np.asarray(raw, np.float32)
        if x.ndim != 2 or x.shape[1] != len(self.config.features):
            raise ValueError(f"lightgbm risk: expected [n, {len(self.config.features)}] features, got {x.shape}")
        if len(x) == 0:
            return np.zeros(0)
        z = self.booster.predict(x, raw_score=True, num_iteration=self.config.best_iteration or None,
                                 num_threads=self.config.threads)
        return np.asarray(z, np.float64) + self.config.logit_offset


def fit_risk_booster(config: RiskLightGBMConfig, x_train: np.ndarray, y_train: np.ndarray,
                     x_valid: np.ndarray, y_valid: np.ndarray) -> RiskBooster:
    """Fit on the training lines, early-stopped on the validation split's log loss (when it has both classes)."""
    import lightgbm as lgb

    y_train, y_valid = np.asarray(y_train, np.float32), np.asarray(y_valid, np.float32)
    if len(y_train) == 0 or y_train.min() == y_train.max():
        raise ValueError("lightgbm risk: the training lines need both returned and kept lines")
    train = lgb.Dataset(np.asarray(x_train, np.float32), y_train, feature_name=list(config.features))
    both = len(y_valid) > 0 and 0 < y_valid.sum() < len(y_valid)
    valid = [lgb.Dataset(np.asarray(x_valid, np.float32), y_valid, reference=train)] if both else []
    callbacks = [lgb.early_stopping(config.early_stopping_rounds, verbose=False)] if both else []
    booster = lgb.train(config.params(), train, num_boost_round=config.rounds, valid_sets=valid, callbacks=callbacks)
    config = RiskLightGBMConfig(**{**asdict(config), "best_iteration": int(booster.best_iteration or 0)})
    return RiskBooster(booster, config)


class LightGBMRiskModel:
    """A loaded LightGBM version: `.score(orders) -> [n_orders]` calibrated probabilities, `.threshold`.

    The served interface of `models.risk.OrderRiskModel` (order probability
    1 - prod(1 - p_line)), without `explain`.
    """

    def __init__(self, booster: RiskBooster, calibrator: Calibrator, threshold: float,
                 customers: pl.DataFrame, items: pl.DataFrame, meta: dict[str, Any] | None = None) -> None:
        self.booster, self.calibrator, self.threshold = booster, calibrator, float(threshold)
        self.customers, self.items, self.meta = customers, items, meta or {}

    def line_probabilities(self, frame: pl.DataFrame) -> np.ndarray:
        """Calibrated return probability of each row of a features frame (RISK_FEATURES columns)."""
        if frame.height == 0:
            return np.zeros(0)
        return self.calibrator(self.booster.logits(numeric_matrix(frame, self.booster.config.features)))

    def score(self, orders: list[dict[str, Any]]) -> np.ndarray:
        orders = validate_orders(orders)
        if not orders:
            return np.zeros(0)
        frame = order_lines_frame(orders, self.customers, self.items)
        return order_probabilities(self.line_probabilities(frame), frame["__order"].to_numpy(), len(orders))


def save_lightgbm_risk(folder: str | Path, booster: RiskBooster, *, calibrator: Calibrator, threshold: float,
                       customers: pl.DataFrame, items: pl.DataFrame, meta: dict[str, Any] | None = None) -> None:
    """Booster (text), its config, calibration + threshold, history state: what `load_lightgbm_risk` reads."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    booster.booster.save_model(str(folder / BOOSTER_FILE), num_iteration=booster.config.best_iteration or None)
    (folder / LIGHTGBM_FILE).write_text(json.dumps({"booster": BOOSTER_FILE, "config": asdict(booster.config)}, indent=2))
    (folder / CALIBRATION).write_text(
        json.dumps({**calibrator.to_json(), "threshold": float(threshold), **(meta or {})}, indent=2, default=str)
    )
    customers.write_parquet(folder / CUSTOMERS)
    items.write_parquet(folder / ITEMS)


def load_lightgbm_risk(folder: str | Path) -> LightGBMRiskModel:
    """A verified LightGBM version folder (checksums are the registry's job) -> LightGBMRiskModel."""
    import lightgbm as lgb

    folder = Path(folder)
    for name in (LIGHTGBM_FILE, BOOSTER_FILE, CALIBRATION, CUSTOMERS, ITEMS):
        if not (folder / name).exists():
            raise FileNotFoundError(f"lightgbm risk folder {folder}: missing {name}")
    meta = json.loads((folder / LIGHTGBM_FILE).read_text())
    booster = RiskBooster(lgb.Booster(model_file=str(folder / meta["booster"])), RiskLightGBMConfig(**meta["config"]))
    cal = json.loads((folder / CALIBRATION).read_text())
    return LightGBMRiskModel(
        booster, Calibrator(cal["kind"], cal.get("params", {})), cal["threshold"],
        pl.read_parquet(folder / CUSTOMERS), pl.read_parquet(folder / ITEMS),
        meta={k: v for k, v in cal.items() if k not in ("kind", "params", "threshold")},
    )
