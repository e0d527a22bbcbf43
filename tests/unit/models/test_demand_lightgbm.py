"""The LightGBM demand forecaster as a version: spec route, save/load, the served contract, Serve and a mixed ensemble.

Tiny data (the synthetic log, 20 items, 200 days) and 30 boosting rounds: each test runs in seconds.
"""

from __future__ import annotations

import datetime as dt
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from ecomine.models.demand import LightGBMDemandModel, load_forecaster
from ecomine.specs import TrainSpec, format_validation_error
from ecomine.train.demand_eval import MODEL_NAMES
from ecomine.train.demand_task import TASK, fit_lightgbm

DATA = {"kind": "synthetic", "users": 600, "items": 20, "days": 200, "seed": 2}
MODEL = {"horizon": 7, "context_length": 28, "d_model": 16, "heads": 2, "layers": 1, "top_items": None,
         "eval": {"lightgbm": False, "test_periods": 28}}


def make_spec(**model) -> TrainSpec:
    return TrainSpec.model_validate({"task": "demand", "data": DATA, "model": {**MODEL, **model},
                                     "optim": {"epochs": 1, "batch_size": 64}})


@pytest.fixture(scope="module")
def spec() -> TrainSpec:
    return make_spec(forecaster="lightgbm", lightgbm={"rounds": 30, "max_rows": 5000})


@pytest.fixture(scope="module")
def data(spec):
    return TASK.prepare(spec)


@pytest.fixture(scope="module")
def fitted(spec, data):
    return fit_lightgbm(spec, data)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, spec, data, fitted) -> Path:
    out = tmp_path_factory.mktemp("lgb-version")
    TASK.save(out, fitted, data, spec)
    return out


def _error(model: dict, task: str = "demand") -> str:
    with pytest.raises(ValidationError) as e:
        TrainSpec.model_validate({"task": task, "data": DATA, "model": model})
    return format_validation_error(e.value, "spec.yaml")


def test_spec_route_and_bad_input_name_the_field() -> None:
    assert make_spec().model.forecaster == "patchtst" and make_spec().model.lightgbm is None
    assert make_spec(forecaster="lightgbm").model.forecaster == "lightgbm"
    msg = _error({"forecaster": "xgboost"})
    assert "model.demand.forecaster" in msg and msg.count("spec.yaml:") == 1
    msg = _error({"lightgbm": {"rounds": 50}})  # LightGBM settings on a PatchTST run
    assert "lightgbm: settings of forecaster lightgbm or ensemble" in msg and msg.count("spec.yaml:") == 1
    msg = _error({"forecaster": "lightgbm"}, task="recommend")  # on another task
    assert "model.recommend.forecaster" in msg and "Extra inputs" in msg
    assert "model.demand.lightgbm.rounds" in _error({"forecaster": "lightgbm", "lightgbm": {"rounds": 1}})
    assert "context_length (14): forecaster lightgbm reads 28" in _error(
        {"forecaster": "lightgbm", "context_length": 14, "patch_length": 7})
    dumped = make_spec().model_dump(mode="json")  # a stored PatchTST spec reads back (lightgbm: null)
    assert TrainSpec.model_validate(dumped).model.lightgbm is None


def test_version_folder_round_trip_gives_identical_forecasts(folder, fitted, data, spec) -> None:
    names = {p.name for p in folder.iterdir()}
    assert {"lightgbm.json", "lightgbm_p10.txt", "lightgbm_p50.txt", "lightgbm_p90.txt", "series.safetensors",
            "config.json", "items.json", "profiles.json"} <= names
    assert "model.safetensors" not in names and not any(n.endswith((".pkl", ".pickle")) for n in names)
    fc = load_forecaster(folder)
    assert isinstance(fc, LightGBMDemandModel)
    assert fc.freq == "1d" and fc.max_horizon == 7 and fc.quantiles == [0.1, 0.5, 0.9]
    assert fc.origin == data.start + dt.timedelta(days=data.n_periods)  # the PatchTST versions' origin
    # the same windows through the fitted and the reloaded boosters
    rows, inputs = fc.network_inputs(list(data.items))
    assert np.array_equal(fitted.predict(**inputs), fc.model.predict(**inputs))
    again = load_forecaster(folder)
    assert np.array_equal(fc.forecast(data.items, 7), again.forecast(data.items, 7))
    # the task's own evaluation row, and the model TASK.load returns is the one it takes
    res = TASK.evaluate(TASK.load(folder, spec, data), data, spec)
    assert MODEL_NAMES["lightgbm"] in res and "patchtst" not in res and np.isfinite(res["lightgbm_forecaster"]["pinball"])
    assert TASK.headline(res)["pinball"] == pytest.approx(res["lightgbm_forecaster"]["pinball"])


def test_served_contract_fallbacks_and_quantile_interpolation(folder, data) -> None:
    fc = load_forecaster(folder)
    ids = [data.items[0], "NOT-AN-ITEM", data.items[1]]
    arr = fc.forecast(ids, 5, [0.1, 0.5, 0.9])
    assert arr.shape == (3, 3, 5) and np.isfinite(arr).all() and (arr >= 0).all()
    assert (np.diff(arr, axis=1) >= 0).all()
    assert fc.known_items(ids) == [True, False, True]
    assert np.array_equal(fc.forecast(["X1"], 5, [0.5]), fc.forecast(["X2"], 5, [0.5]))  # the global profile
    slots = (fc.origin.weekday() + np.arange(5)) % 7  # daily profiles: one row per weekday
    assert np.allclose(arr[1], fc.profiles["__global__"][slots].T)
    mid = fc.forecast(ids, 5, [0.3])
    assert np.all(arr[:, 0] <= mid[:, 0] + 1e-9) and np.all(mid[:, 0] <= arr[:, 1] + 1e-9)
    assert np.allclose(fc.forecast(ids, 5, [0.9, 0.1])[:, ::-1], fc.forecast(ids, 5, [0.1, 0.9]))
    with pytest.raises(ValueError, match="horizon 8 exceeds"):
        fc.forecast(ids, 8, [0.5])


def test_serves_alone_and_beside_a_patchtst_version(folder, data, spec, tmp_path) -> None:
    from ecomine.predict.answers import demand_job, finish_demand
    from ecomine.predict.explain import explain_refusal
    from ecomine.predict.runtime import build_state, run_jobs
    from ecomine.predict.state import Member

    def member(version: str, obj, weight: float, member_spec) -> Member:
        return Member(version, version, weight, datetime.now(timezone.utc), [], obj, member_spec.model_dump(mode="json"))

    pt_spec = make_spec()
    torch.manual_seed(0)
    net = TASK.build_model(pt_spec, data, None).eval()  # an untrained network: the plumbing, not its quality
    pt_folder = tmp_path / "patchtst"
    pt_folder.mkdir()
    TASK.save(pt_folder, net, data, pt_spec)
    lgb, pt = load_forecaster(folder), load_forecaster(pt_folder)
    assert lgb.origin == pt.origin
    single = build_state("demand", [member("lgb", lgb, 1.0, spec)])
    assert explain_refusal(single) is None  # a LightGBM version explains (test_explains_by_the_networks_groups)
    ens = build_state("demand", [member("pt", pt, 0.3, pt_spec), member("lgb", lgb, 0.7, spec)])
    req = {"item_ids": [data.items[0], "NEW-ITEM"], "horizon": 7, "quantiles": [0.1, 0.5, 0.9]}
    for state in (single, ens):
        answer = finish_demand(state, req, run_jobs([(state, demand_job(state, req))])[0])
        rows = answer["forecasts"]
        assert [r["fallback"] for r in rows] == [False, True]
        values = np.asarray(rows[0]["values"])
        assert values.shape == (3, 7) and (np.diff(values, axis=0) >= 0).all() and (values >= 0).all()
    mixed = np.asarray(finish_demand(ens, req, run_jobs([(ens, demand_job(ens, req))])[0])["forecasts"][0]["values"])
    expected = np.sort(0.3 * pt.forecast(req["item_ids"], 7, req["quantiles"])
                       + 0.7 * lgb.forecast(req["item_ids"], 7, req["quantiles"]), axis=1)[0]
    assert np.allclose(mixed, expected)


def test_ensemble_build_takes_a_lightgbm_member_beside_a_patchtst_one(tmp_path, folder, data, spec) -> None:
    from ecomine.ensemble.build import build_ensemble
    from ecomine.registry import Registry
    from ecomine.specs import EnsembleSpec

    registry = Registry(tmp_path / "reg")
    pt_spec = make_spec()
    torch.manual_seed(0)
    pt_folder = tmp_path / "patchtst"
    pt_folder.mkdir()
    noise = TASK.build_model(pt_spec, data, None).eval()
    with torch.no_grad():  # a network that forecasts far too much: the fit must lean on the LightGBM member
        for p in noise.parameters():
            p.add_(torch.randn_like(p) * 2.0)
    TASK.save(pt_folder, noise, data, pt_spec)
    for version, where, s in (("dem-pt", pt_folder, pt_spec), ("dem-lgb", folder, spec)):
        registry.register("demand", where, spec=s.model_dump(mode="json"), data_fingerprint=TASK.fingerprint(data),
                          metrics={}, version=version)
    outcome = build_ensemble(EnsembleSpec.model_validate(
        {"task": "demand", "registry": str(tmp_path / "reg"), "members": [{"version": "dem-pt"}, {"version": "dem-lgb"}]}))
    weights = {m["version"]: m["weight"] for m in outcome.members}
    assert sum(weights.values()) == pytest.approx(1.0)
    assert weights["dem-lgb"] > 0.9
    rows = {k: v["pinball"] for k, v in outcome.results.items() if k.startswith("member ")}
    assert outcome.results["ensemble"]["pinball"] <= max(rows.values()) + 1e-9  # pinball is convex in the forecast
    assert "lightgbm_forecaster" not in outcome.results and "patchtst" not in outcome.results


def test_explains_by_the_networks_groups_exactly(folder, data) -> None:
    from ecomine.models.demand_explain import GROUPS

    fc = load_forecaster(folder)
    ids = [*data.items[:4], "NOT-AN-ITEM"]
    for q in (0.5, 0.9, 0.3):
        out = fc.explain(ids, 6, quantile=q)
        plain = fc.forecast(ids, 6, [q])[:, 0]
        for row, p in zip(out, plain):
            assert np.allclose(row["values"], p)  # the explained values are the served ones
            if row["fallback"]:
                assert row["drivers"] == [] and row["item_id"] == "NOT-AN-ITEM"
                continue
            assert sorted(d["input"] for d in row["drivers"]) == sorted(GROUPS)
            total = np.asarray(row["baseline"]) + np.sum([d["by_step"] for d in row["drivers"]], axis=0)
            assert np.allclose(total, row["values"], atol=1e-9)  # exact Shapley: baseline + effects = forecast
            assert all(np.isfinite(d["effect"]) and len(d["by_step"]) == 6 for d in row["drivers"])
    # the level of a series drives its forecast: across items, |recent_level| + |seasonal_values| is not all zero
    drivers = [{d["input"]: abs(d["effect"]) for d in r["drivers"]} for r in fc.explain(data.items[:4], 6)]
    assert any(d["recent_level"] + d["seasonal_values"] > 0 for d in drivers)
