"""Demand quantile levels: calibrated by a conformal shift per level (fitted on held-out origins), interpolated to the levels asked.

Sits in `models` beside `demand`: `train.demand_task` fits it on the validation origins
after training (`fit_quantile_shift`), writes it into the version (`intervals.json`, with
each panel item's scale in `series.safetensors`), and `PanelForecaster` applies it to every
network forecast it serves, so an evaluation, a batch score, a served answer and an
ensemble member all read the same calibrated quantiles.

The method is split-conformal calibration of each quantile on its own: with residuals
r = (y - f_q) / s_i in units of each item's scale s_i (its in-sample seasonal-naive MAE,
the scale the report's pinball divides by), the shift for level q is the empirical
q-quantile of r over every model item, validation origin and horizon step. Then
P(y <= f_q + shift * s_i) = q on the calibration windows, so a p10-p90 band holds about
80 % when test windows resemble validation ones, and the shift is also the constant that
minimises the scaled pinball loss at that level on those windows (the q-quantile of the
residuals is the pinball minimiser), so calibration cannot cost pinball in-sample.
One shift per level, pooled over the horizon steps: a shift per step had 1/H of the
windows (2 origins x 30 items on the synthetic log) and moved the PatchTST's test pinball
+6 % there. The median is left as trained (shift 0): it is the point forecast WAPE reads,
and moving it by a validation residual cost WAPE on a drifting log; intervals are what
calibration is for.
A few lines of numpy rather than `mapie`: mapie's CQR wraps scikit-learn regressors and
symmetric pairs, while these quantiles come from a network over a panel, per step, and
every level (not only pairs) is calibrated. Count data leave one honest limit: where many
actuals are 0 and the calibrated p10 is 0, an actual of 0 is inside the band, so the band
holds more than 80 % (`below_low` of the report reads 0 there).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["INTERVALS_FILE", "QuantileShift", "fit_quantile_shift", "load_intervals", "interpolate_quantiles"]

INTERVALS_FILE = "intervals.json"


@dataclass(frozen=True)
class QuantileShift:
    """One shift per trained level [Q], in units of each item's scale (0 for the median)."""

    quantiles: tuple[float, ...]
    shifts: np.ndarray  # [Q]
    n_windows: int = 0  # calibration points (items x origins x steps) behind each shift

    def apply(self, forecast: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Calibrated forecasts: `forecast` [n, ..., Q] plus shift x scale [n], >= 0 and sorted in Q."""
        f = np.asarray(forecast, np.float64)
        if f.shape[-1] != len(self.quantiles):
            raise ValueError(f"forecast shape {f.shape} does not fit {len(self.quantiles)} shifted levels")
        s = np.asarray(scale, np.float64).reshape((-1,) + (1,) * (f.ndim - 1))
        out = f + self.shifts * s
        return np.sort(np.maximum(out, 0.0), axis=-1)

    def to_json(self) -> dict:
        return {"method": "conformal shift per quantile level (median kept), in units of each item's scale",
                "quantiles": list(self.quantiles), "shifts": self.shifts.tolist(), "n_windows": self.n_windows}

    @classmethod
    def from_json(cls, raw: dict) -> QuantileShift:
        return cls(quantiles=tuple(raw["quantiles"]), shifts=np.asarray(raw["shifts"], np.float64),
                   n_windows=int(raw.get("n_windows", 0)))

    def save(self, folder: str | Path) -> None:
        (Path(folder) / INTERVALS_FILE).write_text(json.dumps(self.to_json(), indent=2))


def fit_quantile_shift(forecast: np.ndarray, actual: np.ndarray, scale: np.ndarray,
                       quantiles: list[float]) -> QuantileShift:
    """The shifts that calibrate `forecast` [N, O, H, Q] against `actual` [N, O, H] (scale [N] > 0)."""
    f = np.asarray(forecast, np.float64)
    y = np.asarray(actual, np.float64)
    if f.shape != (*y.shape, len(quantiles)) or len(scale) != f.shape[0]:
        raise ValueError(f"forecast {f.shape}, actual {y.shape}, scale {len(scale)} and {len(quantiles)} quantiles disagree")
    if f.shape[0] * f.shape[1] == 0:
        raise ValueError("fit_quantile_shift: no calibration windows (no model items or no origins)")
    s = np.asarray(scale, np.float64)[:, None, None, None]
    r = ((y[..., None] - f) / s).reshape(-1, f.shape[3])  # [N*O*H, Q]: pooled over items, origins and steps
    row = np.array([0.0 if q == 0.5 else np.quantile(r[:, k], q) for k, q in enumerate(quantiles)])
    return QuantileShift(quantiles=tuple(quantiles), shifts=row, n_windows=r.shape[0])


def load_intervals(folder: str | Path) -> QuantileShift | None:
    """The version's calibration, None for a version trained without one (served as trained)."""
    path = Path(folder) / INTERVALS_FILE
    return QuantileShift.from_json(json.loads(path.read_text())) if path.exists() else None


def interpolate_quantiles(values: np.ndarray, trained: list[float], requested: list[float]) -> np.ndarray:
    """[..., len(trained)] -> [..., len(requested)] by linear interpolation between trained levels.

    Levels outside the trained range are clamped to the nearest trained level;
    `PanelForecaster.check_request` refuses them before they get here (extrapolating
    the tails of an intermittent count distribution from two points would be a guess).
    """
    trained_a = np.asarray(trained, dtype=np.float64)
    req = np.clip(np.asarray(requested, dtype=np.float64), trained_a[0], trained_a[-1])
    if len(trained_a) == 1:
        return np.repeat(values[..., :1], len(req), axis=-1)
    hi = np.clip(np.searchsorted(trained_a, req, side="left"), 1, len(trained_a) - 1)
    lo = hi - 1
    w = (req - trained_a[lo]) / (trained_a[hi] - trained_a[lo])
    return values[..., lo] * (1 - w) + values[..., hi] * w
