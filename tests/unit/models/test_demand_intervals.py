"""Conformal demand intervals: the shift's maths, and a version that carries it from training to the served forecast.

The version tests use the LightGBM forecaster on the tiny synthetic log (30 boosting rounds, seconds);
the calibration code is the same for the PatchTST network (both go through `_model_forecasts` and
`PanelForecaster.forecast`).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ecomine.models.demand import load_forecaster
from ecomine.models.demand_intervals import INTERVALS_FILE, QuantileShift, fit_quantile_shift, load_intervals
from ecomine.specs import TrainSpec
from ecomine.train.demand_task import TASK, UNCALIBRATED, _actuals, _model_forecasts, fit_intervals, fit_lightgbm

QS = [0.1, 0.5, 0.9]
DATA = {"kind": "synthetic", "users": 600, "items": 20, "days": 200, "seed": 2}
MODEL = {"horizon": 7, "context_length": 28, "top_items": None, "forecaster": "lightgbm", "intervals": "conformal",
         "lightgbm": {"rounds": 30, "max_rows": 5000}, "eval": {"lightgbm": False, "test_periods": 28, "valid_origins": 4}}


def _too_narrow(rng, n_items=200, origins=6, H=3):
    """Actuals ~ N(10 s, (2 s)^2) per item, and a band that believes the spread is 1 s (covers ~38 %)."""
    scale = rng.uniform(0.5, 5.0, n_items)
    y = 10 * scale[:, None, None] + 2 * scale[:, None, None] * rng.standard_normal((n_items, origins, H))
    z = np.array([-1.2816, 0.0, 1.2816])
    f = 10 * scale[:, None, None, None] + scale[:, None, None, None] * z + np.zeros((n_items, origins, H, 3))
    return f, y, scale


def test_the_shift_makes_each_quantile_hold_its_level_on_new_windows() -> None:
    rng = np.random.default_rng(0)
    f, y, scale = _too_narrow(rng)
    before = ((f[..., 0] <= y) & (y <= f[..., 2])).mean()
    shift = fit_quantile_shift(f[:100], y[:100], scale[:100], QS)
    cal = shift.apply(f[100:], scale[100:])
    held = [(y[100:] <= cal[..., k]).mean() for k in range(3)]
    assert before < 0.5
    assert held == pytest.approx(QS, abs=0.04)
    assert ((cal[..., 0] <= y[100:]) & (y[100:] <= cal[..., 2])).mean() == pytest.approx(0.8, abs=0.05)
    # the shift is the residual quantile: the pinball-optimal constant, so in-sample pinball cannot rise
    r = (y[:100] - f[:100, ..., 2]) / scale[:100, None, None]
    assert shift.shifts.shape == (3,) and shift.shifts[2] == pytest.approx(np.quantile(r, 0.9))  # pooled over the steps
    assert shift.shifts[1] == 0  # the median stays as trained


def test_apply_keeps_forecasts_non_negative_and_sorted_and_round_trips(tmp_path) -> None:
    shift = QuantileShift(quantiles=(0.1, 0.5, 0.9), shifts=np.array([-5.0, 0.0, -3.0]), n_windows=4)
    f = np.array([[[1.0, 2.0, 3.0], [1.0, 2.0, 6.0]]])  # [1 item, H=2, Q=3]
    out = shift.apply(f, np.array([1.0]))
    assert (out >= 0).all() and (np.diff(out, axis=-1) >= 0).all()
    assert out[0, 0].tolist() == [0.0, 0.0, 2.0] and out[0, 1].tolist() == [0.0, 2.0, 3.0]  # clipped at 0, re-sorted
    assert shift.apply(f, np.array([0.5]))[0, 1].tolist() == [0.0, 2.0, 4.5]  # the shift is in units of the item's scale
    shift.save(tmp_path)
    again = load_intervals(tmp_path)
    assert again.quantiles == shift.quantiles and np.array_equal(again.shifts, shift.shifts) and again.n_windows == 4
    assert load_intervals(tmp_path / "nowhere") is None
    with pytest.raises(ValueError, match="does not fit 3 shifted levels"):
        shift.apply(np.zeros((1, 3, 2)), np.ones(1))  # 2 levels, 3 fitted
    with pytest.raises(ValueError, match="disagree"):
        fit_quantile_shift(np.zeros((2, 1, 1, 3)), np.zeros((2, 1, 1)), np.ones(3), QS)


@pytest.fixture(scope="module")
def spec() -> TrainSpec:
    return TrainSpec.model_validate({"task": "demand", "data": DATA, "model": MODEL, "optim": {"epochs": 1}})


@pytest.fixture(scope="module")
def data(spec):
    return TASK.prepare(spec)


def test_a_version_carries_its_intervals_to_the_served_forecast(tmp_path, spec, data) -> None:
    model = fit_lightgbm(spec, data)
    results = TASK.evaluate(model, data, spec)
    name = "lightgbm_forecaster"
    assert model.intervals is not None and f"{name}{UNCALIBRATED}" in results
    # on the validation origins each calibrated quantile holds about its level (count data: ties at 0 allowed)
    keep = ~data.fallback
    val = _model_forecasts(model, data, data.valid_origins, spec, data.profiles_eval)[keep]
    y = _actuals(data, data.valid_origins, spec.model.horizon)[keep]
    assert (y <= val[..., 2]).mean() >= 0.88 and (y < val[..., 0]).mean() <= 0.12
    TASK.save(tmp_path, model, data, spec)
    assert json.loads((tmp_path / INTERVALS_FILE).read_text())["quantiles"] == QS
    served = load_forecaster(tmp_path)
    assert served.intervals is not None and np.allclose(served.scale, data.scale, rtol=1e-6)
    # the served answer is the network's forecast through the stored shift
    rows, inputs = served.network_inputs(list(data.items))
    raw = served.model.predict(**inputs)
    expected = served.intervals.apply(raw, served.scale[inputs["item"] - 1])
    got = served.forecast([data.items[r] for r in rows], spec.model.horizon)
    assert np.allclose(got, expected.transpose(0, 2, 1), atol=1e-4)
    # TASK.load gives the model as served: its own intervals, not a refit on other data
    assert fit_intervals(TASK.load(tmp_path, spec, data), data, spec) is not None


def test_intervals_none_serves_the_quantiles_as_trained(tmp_path, data) -> None:
    spec = TrainSpec.model_validate({"task": "demand", "data": DATA, "model": {**MODEL, "intervals": "none"},
                                     "optim": {"epochs": 1}})
    model = fit_lightgbm(spec, data)
    results = TASK.evaluate(model, data, spec)
    assert model.intervals is None and not any(k.endswith(UNCALIBRATED) for k in results)
    TASK.save(tmp_path, model, data, spec)
    assert not (tmp_path / INTERVALS_FILE).exists()
    served = load_forecaster(tmp_path)
    rows, inputs = served.network_inputs(list(data.items))
    got = served.forecast([data.items[r] for r in rows], spec.model.horizon)
    assert served.intervals is None and np.allclose(got, np.maximum(served.model.predict(**inputs), 0).transpose(0, 2, 1), atol=1e-4)


def test_a_level_outside_the_trained_ones_is_refused_not_clamped(tmp_path, spec, data) -> None:
    model = fit_lightgbm(spec, data)
    TASK.save(tmp_path, model, data, spec)
    served = load_forecaster(tmp_path)
    assert served.forecast(data.items[:2], 7, [0.1, 0.25, 0.9]).shape == (2, 3, 7)  # inside: interpolated
    for asked in ([0.99], [0.05, 0.5]):
        with pytest.raises(ValueError, match=r"quantiles \[0\.\d+\] lie outside the trained levels 0.1 to 0.9"):
            served.forecast(data.items[:2], 7, asked)
