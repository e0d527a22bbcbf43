"""The risk model's calibrator: corrected logits -> calibrated probabilities, fitted on validation.

Sits in `models` beside `risk` (which stores it as calibration.json in a version
folder); the risk task (`ecomine.train.risk_task`) fits it after training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Calibrator"]


@dataclass
class Calibrator:
    """Maps corrected logits to calibrated probabilities. Fitted on the validation split.

    temperature: sigmoid(z / T); platt: sigmoid(a z + b); isotonic: monotone step map of
    sigmoid(z) (stored as its knots); none: sigmoid(z).
    """

    kind: str = "none"
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(cls, kind: str, logits: np.ndarray, labels: np.ndarray) -> Calibrator:
        z, y = np.asarray(logits, np.float64), np.asarray(labels, np.float64)
        if kind == "none" or len(z) == 0 or y.min() == y.max():
            return cls("none" if kind == "none" else kind, {} if kind == "none" else _identity(kind))
        if kind == "temperature":
            from scipy.optimize import minimize_scalar

            res = minimize_scalar(lambda lt: _nll(z / math.exp(lt), y), bounds=(-4.0, 4.0), method="bounded")
            return cls(kind, {"temperature": float(math.exp(res.x))})
        if kind == "platt":
            from sklearn.linear_model import LogisticRegression

            lr = LogisticRegression(C=1e6, max_iter=1000).fit(z.reshape(-1, 1), y)
            return cls(kind, {"a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])})
        if kind == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(_sigmoid(z), y)
            return cls(kind, {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()})
        raise ValueError(f"calibration: unknown kind {kind!r}; use temperature | platt | isotonic | none")

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        z = np.asarray(logits, np.float64)
        p = self.params
        if self.kind == "temperature":
            return _sigmoid(z / p.get("temperature", 1.0))
        if self.kind == "platt":
            return _sigmoid(p.get("a", 1.0) * z + p.get("b", 0.0))
        if self.kind == "isotonic" and p.get("x"):
            return np.interp(_sigmoid(z), p["x"], p["y"])
        return _sigmoid(z)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": self.params}


def _identity(kind: str) -> dict[str, Any]:
    return {"temperature": {"temperature": 1.0}, "platt": {"a": 1.0, "b": 0.0}}.get(kind, {})


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, np.float64)))  # overflow-free


def _nll(z: np.ndarray, y: np.ndarray) -> float:
    # log(1 + e^z) - y z, stably
    return float(np.mean(np.logaddexp(0.0, z) - y * z))
