"""Demand model family without Ray: specs, calendar, pinball math, model shapes and monotone
quantiles, leakage-free cuts, baselines, fallback profiles and the served forecaster contract."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from pydantic import ValidationError

from ecomine.models.demand import (
    DemandConfig,
    DemandNet,
    DemandModel,
    calendar_features,
    interpolate_quantiles,
    load_forecaster,
    period_dates,
    pinball_loss,
)
from ecomine.specs import SpecError, TrainSpec
from ecomine.train.demand_eval import (
    MODEL_NAME,
    forecast_metrics,
    lightgbm_forecasts,
    moving_average,
    naive_scale,
    seasonal_naive,
)
from ecomine.train.demand_task import TASK, PROFILE_GLOBAL, prepare_demand_data

DATA = {"kind": "synthetic", "users": 600, "items": 20, "days": 200, "seed": 2}


def make_spec(**model) -> TrainSpec:
    m = {"horizon": 7, "context_length": 28, "d_model": 16, "heads": 2, "layers": 1, "top_items": None,
         "eval": {"lightgbm": False, "test_periods": 28}, **model}
    return TrainSpec.model_validate({"task": "demand", "data": DATA, "model": m,
                                     "optim": {"epochs": 1, "batch_size": 64}})


@pytest.fixture(scope="module")
def spec() -> TrainSpec:
    return make_spec()


@pytest.fixture(scope="module")
def data(spec):
    return TASK.prepare(spec)


@pytest.fixture(scope="module")
def trained(spec, data):
    torch.manual_seed(0)
    model = TASK.build_model(spec, data, None)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    order = np.random.default_rng(0).permutation(TASK.num_examples(data))
    for s in range(0, min(len(order), 64 * 20), 64):
        loss = model(**TASK.batch(data, order[s:s + 64], "cpu"))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


# ----------------------------------------------------------------------------- specs


@pytest.mark.parametrize(("model", "match"), [
    ({"quantiles": [0.1, 0.9]}, "must include 0.5"),
    ({"quantiles": [0.5, 0.1]}, "sorted"),
    ({"quantiles": [0.0, 0.5]}, r"\(0, 1\)"),
    ({"horizon": 120}, "horizon"),
    ({"freq": "1h"}, "freq"),
    ({"d_model": 30, "heads": 4}, "divisible"),
    ({"patch_length": 40}, "patch_length"),
    ({"eval": {"valid_origins": 0}}, "valid_origins"),
])
def test_spec_rejects_bad_values_naming_the_field(model, match) -> None:
    with pytest.raises(ValidationError, match=match):
        make_spec(**model)


def test_spec_defaults_and_early_stopping_metric() -> None:
    s = TrainSpec.model_validate({"task": "demand", "data": DATA, "model": {"preset": "demand_base"}})
    assert s.model.quantiles == [0.1, 0.5, 0.9] and s.model.d_model == 64 and s.watch() == ("pinball", "min")
    s = TrainSpec.model_validate({"task": "demand", "data": DATA, "optim": {"early_stopping": {"metric": "coverage"}}})
    assert s.watch() == ("coverage", "max")
    with pytest.raises(ValidationError, match="ndcg@10"):
        TrainSpec.model_validate({"task": "demand", "data": DATA, "optim": {"early_stopping": {"metric": "ndcg@10"}}})


# ----------------------------------------------------------------------------- calendar, math


def test_calendar_features_know_christmas_weekends_and_holidays() -> None:
    d = period_dates(dt.date(2011, 12, 23), 5, "1d")  # Fri .. Tue; Dec 26 and 27 are bank holidays in 2011
    cal = calendar_features(d, "1d")
    assert cal.shape == (5, 13)
    assert cal[:, :7].argmax(1).tolist() == [4, 5, 6, 0, 1]  # day of week, Monday = 0
    assert cal[:, 7].tolist() == [0, 0, 0, 1, 1]  # holidays
    assert cal[2, 8] == 0 and cal[2, 9] == 1  # Christmas day: 0 weeks to go
    assert cal[3, 8] > 0.9  # the day after: almost a year to the next one
    assert cal[:, 12].tolist() == [0, 1, 1, 0, 0]  # weekend
    weekly = calendar_features(period_dates(dt.date(2011, 12, 19), 2, "1w"), "1w")
    assert weekly[:, 7].tolist() == [0, 1] and weekly[:, 12].tolist() == [0, 0]


def test_pinball_loss_matches_a_hand_example() -> None:
    # y = 10; predictions 8 (q=0.1), 10 (q=0.5), 15 (q=0.9)
    # q=0.1: under by 2 -> 0.1*2 = 0.2; q=0.5: 0; q=0.9: over by 5 -> 0.1*5 = 0.5; mean = 0.7/3
    pred = np.array([[8.0, 10.0, 15.0]])
    assert pinball_loss(pred, np.array([10.0]), [0.1, 0.5, 0.9]) == pytest.approx(0.7 / 3)
    t = pinball_loss(torch.tensor(pred), torch.tensor([10.0], dtype=torch.float64), [0.1, 0.5, 0.9])
    assert float(t) == pytest.approx(0.7 / 3)


def test_forecast_metrics_by_hand() -> None:
    y = np.array([[[0.0, 10.0]]])  # 1 item, 1 origin, 2 steps
    f = np.array([[[[0.0, 1.0, 2.0], [5.0, 8.0, 12.0]]]])
    m = forecast_metrics(y, f, [0.1, 0.5, 0.9], scale=np.array([2.0]))
    assert m["wape"] == pytest.approx((1 + 2) / 10)
    assert m["mase"] == pytest.approx((1 / 2 + 2 / 2) / 2)
    assert m["coverage"] == pytest.approx(1.0) and m["below_low"] == 0 and m["above_high"] == 0
    # the zero day sits on its p10 of 0: inside the closed band, outside the open one
    assert m["coverage_open"] == pytest.approx(0.5)
    high = forecast_metrics(y + 20, f, [0.1, 0.5, 0.9], scale=np.array([2.0]))
    assert high["coverage"] == 0 and high["above_high"] == 1
    # raw pinball p90: step 1 over by 2 -> 0.1*2, step 2 over by 2 -> 0.2; mean 0.2
    assert m["raw_pinball_p90"] == pytest.approx(0.2)
    assert m["pinball_p90"] == pytest.approx(0.1)
    assert forecast_metrics(y, f, [0.1, 0.5, 0.9], np.array([2.0]), point_only=True)["coverage"] is None
    with pytest.raises(ValueError, match="NaN"):
        forecast_metrics(y, np.full_like(f, np.nan), [0.1, 0.5, 0.9], np.array([2.0]))


def test_point_baselines_and_naive_scale() -> None:
    units = np.arange(30, dtype=float)[None, :]  # one item, 0..29
    origins = np.array([14, 21])
    sn = seasonal_naive(units, origins, 9, 7)
    assert sn[0, 0].tolist() == [7, 8, 9, 10, 11, 12, 13, 7, 8]
    ma = moving_average(units, origins, 3, 4)
    assert ma[0, 1].tolist() == [18.5, 18.5, 18.5]
    assert naive_scale(units, 20, 7).tolist() == [7.0]
    flat = np.zeros((2, 20))
    flat[1] = np.tile([0, 4], 10)
    assert naive_scale(flat, 20, 1).tolist() == [4.0, 4.0]  # the all-zero item borrows the others' scale


def test_interpolate_quantiles_between_and_outside_trained_levels() -> None:
    v = np.array([[1.0, 3.0, 7.0]])
    out = interpolate_quantiles(v, [0.1, 0.5, 0.9], [0.05, 0.3, 0.5, 0.7, 0.95])
    assert out[0].tolist() == pytest.approx([1.0, 2.0, 3.0, 5.0, 7.0])  # clamped at the trained ends


# ----------------------------------------------------------------------------- model


def test_model_shapes_monotone_non_negative_quantiles() -> None:
    cfg = DemandConfig(n_items=5, horizon=6, context_length=21, quantiles=[0.1, 0.25, 0.5, 0.9], d_model=16,
                       layers=1, heads=2)
    torch.manual_seed(0)
    model = DemandNet(cfg)
    past = torch.rand(8, 21) * 50
    past[0] = 0  # an all-zero history
    batch = {"past": past, "item": torch.arange(8) % 6, "future_cov": torch.rand(8, 6, 13), "price_rel": torch.zeros(8)}
    out = model.eval()(**batch)
    assert out.shape == (8, 6, 4) and torch.isfinite(out).all() and (out >= 0).all()
    assert (out.diff(dim=-1) >= 0).all()
    loss = model.train()(**batch, target=torch.rand(8, 6) * 50)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if n.startswith(("pool", "head")))


# ----------------------------------------------------------------------------- task


def test_cuts_are_leakage_free(data, spec) -> None:
    H, C, T = 7, 28, data.n_periods
    assert data.test_origins[-1] + H == T  # the last test forecast ends with the data
    assert data.test_origins[0] >= T - 28 and np.all(np.diff(data.test_origins) == 7)
    assert data.valid_origins[-1] + H <= data.test_origins[0]  # validation targets end before test ones
    assert data.train_pairs[:, 1].max() + H <= data.valid_origins[0]  # training targets before validation
    assert data.train_pairs[:, 1].min() >= C
    assert data.units.shape == (len(data.items), T) and data.cov.shape == (T + H, 13)


def test_validate_and_evaluate_report_every_model(trained, data, spec) -> None:
    with torch.inference_mode():
        val = TASK.validate(trained, data, spec, "cpu")
    assert set(val) == {"loss", "pinball", "wape", "mase", "coverage"}
    assert all(np.isfinite(v) for v in val.values())
    with torch.inference_mode():
        res = TASK.evaluate(trained, data, spec)
    assert {MODEL_NAME, "zero", "seasonal_naive", "moving_average_28"} <= set(res)
    assert res[MODEL_NAME]["n"] == len(data.items) * len(data.test_origins) * 7
    assert TASK.headline(res)["pinball"] == pytest.approx(res[MODEL_NAME]["pinball"])


def test_lightgbm_baseline_shapes(data) -> None:
    f = lightgbm_forecasts(data.units, data.price_rel, data.cov, data.train_pairs, data.test_origins, 7, 7,
                           [0.1, 0.5, 0.9], rounds=10, max_rows=5000)
    assert f.shape == (len(data.items), len(data.test_origins), 7, 3)
    assert np.isfinite(f).all() and (f >= 0).all() and (np.diff(f, axis=-1) >= 0).all()


def test_the_lightgbm_baseline_is_fitted_once_per_data_and_settings(trained, data, spec) -> None:
    with_lgb = spec.model_copy(update={"model": spec.model.model_copy(update={
        "eval": spec.model.eval.model_copy(update={"lightgbm": True, "lightgbm_rounds": 10})})})
    data.baseline_cache.clear()
    with torch.inference_mode():
        first = TASK.evaluate(trained, data, with_lgb)
        assert len(data.baseline_cache) == 1
        again = TASK.evaluate(trained, data, with_lgb)  # an ensemble run's next evaluation: no refit
        assert len(data.baseline_cache) == 1 and again["lightgbm"] == first["lightgbm"]
        other = with_lgb.model_copy(update={"optim": with_lgb.optim.model_copy(update={"seed": 1})})
        TASK.evaluate(trained, data, other)  # other settings: their own fit
    assert len(data.baseline_cache) == 2
    data.baseline_cache.clear()


def test_items_with_little_history_fall_back_to_a_profile(spec) -> None:
    s = make_spec(min_history=10_000)  # nobody qualifies: every item is a fallback
    d = prepare_demand_data(s)
    assert d.fallback.all()
    assert set(d.profiles_eval) >= {PROFILE_GLOBAL} and len(d.profiles_eval) > 1  # synthetic has categories
    model = TASK.build_model(s, d, None).eval()
    with torch.inference_mode():
        res = TASK.evaluate(model, d, s)
    assert np.isfinite(res[MODEL_NAME]["pinball"]) and res[MODEL_NAME]["n_fallback"] == len(d.items)


def test_bad_data_gives_clear_errors(spec) -> None:
    from ecomine.datasets.synthetic import SynthParams, generate

    events = generate(SynthParams(users=50, items=10, days=30, seed=0)).events
    with pytest.raises(SpecError, match="too few"):
        prepare_demand_data(spec, events=events)
    with pytest.raises(SpecError, match="no purchase events"):
        prepare_demand_data(spec, events=events.filter(pl.col("event") == "view"))


def test_weekly_series_train_and_forecast(tmp_path: Path) -> None:
    s = make_spec(freq="1w", horizon=2, context_length=8, patch_length=4, patch_stride=4, min_history=2,
                  eval={"lightgbm": False, "test_periods": 4})
    d = prepare_demand_data(s)
    assert d.freq == "1w" and pl.Series([d.start]).dt.weekday()[0] == 1  # ISO weeks start on Monday
    assert d.test_origins.tolist() == [d.n_periods - 4, d.n_periods - 3, d.n_periods - 2]
    model = TASK.build_model(s, d, None)
    loss = model(**TASK.batch(d, np.arange(32), "cpu"))
    assert torch.isfinite(loss)
    with torch.inference_mode():
        res = TASK.evaluate(model.eval(), d, s)
    assert "moving_average_4" in res and np.isfinite(res[MODEL_NAME]["pinball"])
    TASK.save(tmp_path, model, d, s)
    fc = load_forecaster(tmp_path)
    assert fc.freq == "1w" and fc.origin.weekday() == 0
    arr = fc.forecast([d.items[0], "NEW"], 2, [0.5])
    assert arr.shape == (2, 1, 2) and np.isfinite(arr).all() and (arr >= 0).all()


# ----------------------------------------------------------------------------- served forecaster


def test_saved_forecaster_contract(tmp_path: Path, trained, data, spec) -> None:
    TASK.save(tmp_path, trained, data, spec)
    assert {"model.safetensors", "series.safetensors", "config.json", "items.json", "profiles.json"} <= {
        p.name for p in tmp_path.iterdir()}
    fc = load_forecaster(tmp_path)
    assert fc.freq == "1d" and fc.max_horizon == 7
    assert fc.origin == data.start + dt.timedelta(days=data.n_periods)  # forecasts from the end of the data
    ids = [data.items[0], "NOT-AN-ITEM", data.items[1]]
    arr = fc.forecast(ids, 5, [0.1, 0.5, 0.9])
    assert arr.shape == (3, 3, 5) and np.isfinite(arr).all() and (arr >= 0).all()
    assert (np.diff(arr, axis=1) >= 0).all()
    assert fc.known_items(ids) == [True, False, True]
    # an unknown item gets the global profile: the same numbers for any unknown id
    assert np.array_equal(fc.forecast(["X1"], 5, [0.5]), fc.forecast(["X2"], 5, [0.5]))
    # requested levels: interpolated between trained ones, answered in the caller's order
    mid = fc.forecast(ids, 5, [0.3])
    assert np.all(arr[:, 0] <= mid[:, 0] + 1e-9) and np.all(mid[:, 0] <= arr[:, 1] + 1e-9)
    assert np.allclose(fc.forecast(ids, 5, [0.9, 0.1])[:, ::-1], fc.forecast(ids, 5, [0.1, 0.9]))
    with pytest.raises(ValueError, match="horizon 8 exceeds"):
        fc.forecast(ids, 8, [0.5])
    with pytest.raises(ValueError, match="horizon"):
        fc.forecast(ids, 0, [0.5])
    with pytest.raises(ValueError, match="quantiles"):
        fc.forecast(ids, 3, [1.5])
    # the torch model TASK.load returns is the one `evaluate` takes
    model = TASK.load(tmp_path, spec, data)
    with torch.inference_mode():
        assert np.isfinite(TASK.evaluate(model, data, spec)[MODEL_NAME]["wape"])


def test_forecaster_flags_fallback_items_of_the_panel(trained, data) -> None:
    cfg = trained.config
    k = len(data.items)
    fc = DemandModel(
        model=trained, config=cfg, items=data.items, tail_units=np.zeros((k, cfg.context_length), np.float32),
        price_rel=np.zeros(k, np.float32), origin=dt.date(2024, 1, 1),
        profiles={PROFILE_GLOBAL: np.tile([[0.0, 1.0, 3.0]], (7, 1)), "toys": np.tile([[1.0, 2.0, 5.0]], (7, 1))},
        item_category={data.items[0]: "toys"}, fallback_items=[data.items[0]],
    )
    assert fc.known_items([data.items[0], data.items[1]]) == [False, True]
    out = fc.forecast([data.items[0], "NEW"], 3, [0.1, 0.5, 0.9])
    assert out[0, :, 0].tolist() == [1.0, 2.0, 5.0]  # the item's category profile
    assert out[1, :, 0].tolist() == [0.0, 1.0, 3.0]  # an unknown item: the global one
    with pytest.raises(ValueError, match="exceeds"):
        fc.forecast(["NEW"], 99, [0.5])


def test_seeds_are_the_ensemble_forecasters_members() -> None:
    from ecomine.ensemble.trained import member_spec

    # a single forecaster trains one model whatever `seeds` says: overriding the shipped ensemble's forecaster
    # (tune/demand.yaml, `--set model.forecaster=patchtst`) needs nothing else
    alone = TrainSpec.model_validate({"task": "demand", "data": DATA, "model": {"forecaster": "patchtst", "seeds": 3}})
    assert alone.model.seeds == 3
    spec = TrainSpec.model_validate({"task": "demand", "data": DATA, "model": {"forecaster": "ensemble", "seeds": 3}})
    second = member_spec(spec, "patchtst", "run", seed=2)
    assert (second.model.seeds, second.optim.seed, second.run.name) == (1, spec.optim.seed + 2, "run-patchtst-s2")
    assert member_spec(spec, "lightgbm", "run").optim.seed == spec.optim.seed
