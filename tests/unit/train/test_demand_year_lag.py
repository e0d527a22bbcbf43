"""`model.year_lag`: each horizon step also reads the item's value one year back, in training and as served.

Weekly series from the synthetic log over 600 days (86 weeks: the validation origins sit past week 52);
a 1-layer, 16-wide PatchTST - the wiring is what is checked, not the quality (benchmarks/demand_shapes.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ecomine.models.demand import explain_forecast, load_forecaster, year_lag_periods
from ecomine.specs import SpecError, TrainSpec
from ecomine.train.demand_task import TASK, _window_arrays

DATA = {"kind": "synthetic", "users": 400, "items": 12, "days": 600, "seed": 3}


def make_spec(**model) -> TrainSpec:
    m = {"freq": "1w", "horizon": 3, "context_length": 8, "patch_length": 4, "patch_stride": 4, "d_model": 16,
         "heads": 2, "layers": 1, "top_items": None, "min_history": 2, "year_lag": "on",
         "eval": {"lightgbm": False, "test_periods": 4}, **model}
    return TrainSpec.model_validate({"task": "demand", "data": DATA, "model": m, "optim": {"epochs": 1}})


@pytest.fixture(scope="module")
def spec() -> TrainSpec:
    return make_spec()


@pytest.fixture(scope="module")
def data(spec):
    return TASK.prepare(spec)


def test_windows_read_the_value_one_year_back_and_flag_it_missing_before_the_data(data) -> None:
    assert data.year_lag == year_lag_periods("1w") == 52
    items, origins = np.array([0, 1, 2]), np.array([8, 60, 70])
    year = _window_arrays(data, items, origins, 8, 3)["year_ago"]
    assert np.isnan(year[0]).all()  # week 8: no year behind it
    for r in (1, 2):
        assert np.array_equal(year[r], data.units[items[r], origins[r] - 52 + np.arange(3)])
    assert "year_ago" not in _window_arrays(data, items, origins, 8, 3, year_lag=0)


def test_a_year_lag_version_trains_saves_and_serves_what_it_evaluated(tmp_path: Path, spec, data) -> None:
    torch.manual_seed(0)
    model = TASK.build_model(spec, data, None)
    assert model.config.year_lag
    loss = model(**TASK.batch(data, np.arange(64), "cpu"))
    assert torch.isfinite(loss)
    loss.backward()
    with torch.inference_mode():
        res = TASK.evaluate(model.eval(), data, spec)
    assert np.isfinite(res["patchtst"]["pinball"])
    TASK.save(tmp_path, model, data, spec)
    served = load_forecaster(tmp_path)
    assert served.year_tail.shape == (len(data.items), 52)
    assert np.array_equal(served.year_tail[:, -1], data.units[:, -1])  # the last year of units before the origin
    rows, inputs = served.network_inputs(list(data.items))
    assert np.array_equal(inputs["year_ago"], served.year_tail[rows][:, :3])  # step h of the origin is a year back
    fc = served.forecast(list(data.items), 3, [0.5])
    assert np.isfinite(fc).all() and (fc >= 0).all()
    # the explained value is the served one, with last year's values held as they are in every coalition
    explained = explain_forecast(served, [data.items[rows[0]]], 3)[0]
    assert np.allclose(explained["values"], fc[rows[0], 0], atol=1e-4)


def test_a_log_shorter_than_a_year_is_refused_when_on_and_read_without_when_auto() -> None:
    short = TrainSpec.model_validate({**make_spec().model_dump(mode="json"), "data": {**DATA, "days": 300}})
    with pytest.raises(SpecError, match=r"model.year_lag: .* a value one year back needs 52"):
        TASK.prepare(short)
    auto = TrainSpec.model_validate({**short.model_dump(mode="json"), "model": {**short.model.model_dump(mode="json"), "year_lag": "auto"}})
    d = TASK.prepare(auto)
    assert d.year_lag == 0 and not TASK.build_model(auto, d, None).config.year_lag
    assert TASK.prepare(TrainSpec.model_validate({**auto.model_dump(mode="json"), "data": DATA})).year_lag == 52


def test_lightgbm_and_year_lag_false_read_no_year() -> None:
    assert TASK.prepare(make_spec(year_lag="off")).year_lag == 0
    assert TASK.prepare(make_spec(forecaster="lightgbm", context_length=28, patch_length=4)).year_lag == 0
