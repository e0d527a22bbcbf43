"""Demand explanations (`ecomine.models.demand_explain`) on a tiny trained forecaster: the values are the
forecast's, the Shapley effects add up to it, known answers come out, one forward pass, clear errors, and
the top driver is the one whose ablation moves p50 most."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ecomine.models.demand import DemandModel, load_forecaster
from ecomine.models.demand_explain import GROUPS, coalition_forecasts, explain_forecast, shapley_values
from ecomine.specs import TrainSpec
from ecomine.train.demand_task import TASK

DATA = {"kind": "synthetic", "users": 600, "items": 30, "days": 200, "seed": 2}
H = 7


@pytest.fixture(scope="module")
def spec() -> TrainSpec:
    m = {"horizon": H, "context_length": 28, "d_model": 16, "heads": 2, "layers": 1, "top_items": None,
         "min_history": 5, "eval": {"lightgbm": False, "test_periods": 28}}
    return TrainSpec.model_validate({"task": "demand", "data": DATA, "model": m,
                                     "optim": {"epochs": 1, "batch_size": 64}})


@pytest.fixture(scope="module")
def data(spec):
    return TASK.prepare(spec)


@pytest.fixture(scope="module")
def fc(spec, data, tmp_path_factory) -> DemandModel:
    """A real forecaster: trained for 60 steps the way test_demand trains, saved and loaded as serving does."""
    torch.manual_seed(0)
    model = TASK.build_model(spec, data, None)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    order = np.random.default_rng(0).permutation(TASK.num_examples(data))
    for s in range(0, min(len(order), 64 * 60), 64):
        loss = model(**TASK.batch(data, order[s:s + 64], "cpu"))
        opt.zero_grad()
        loss.backward()
        opt.step()
    folder = tmp_path_factory.mktemp("demand")
    TASK.save(folder, model.eval(), data, spec)
    return load_forecaster(folder)


def known(fc: DemandModel) -> list[str]:
    return [i for i, ok in zip(fc.items, fc.known_items(fc.items)) if ok]


def test_training_path_is_unchanged_by_the_hook(fc) -> None:
    net = fc.model
    batch = {"past": torch.rand(6, 28) * 20, "item": torch.arange(6), "future_cov": torch.rand(6, H, 13),
             "price_rel": torch.zeros(6)}
    off = torch.zeros(6, dtype=torch.bool)
    with torch.no_grad():
        assert torch.equal(net.eval()(**batch), net(**batch, flat_profile=off))
        assert not torch.equal(net(**batch), net(**batch, flat_profile=~off))
        # past_index: rows reading a shared history get what they would get from their own copy of it
        idx = torch.tensor([0, 0, 3, 1, 3, 2])
        shared = net(batch["past"][:4], batch["item"], batch["future_cov"], batch["price_rel"], past_index=idx)
        torch.testing.assert_close(shared, net(**{**batch, "past": batch["past"][idx]}))
    target = torch.rand(6, H) * 20
    torch.manual_seed(1)
    a = net.train()(**batch, target=target)
    torch.manual_seed(1)
    b = net(**batch, target=target, flat_profile=off)
    net.eval()
    assert torch.equal(a, b)


def test_values_equal_the_forecast_and_fallbacks_have_no_drivers(fc) -> None:
    ids = known(fc)
    panel_fallback = fc.items[0] if fc.fallback_items == [] else fc.fallback_items[0]
    fc2 = dataclasses.replace(fc, fallback_items=[*fc.fallback_items, panel_fallback])
    asked = [ids[1], "NOT-AN-ITEM", panel_fallback, ids[2]]
    out = fc2.explain(asked, 5)
    assert [o["item_id"] for o in out] == asked
    f = fc2.forecast(asked, 5, [0.5])[:, 0, :]
    for o, row in zip(out, f):
        assert o["quantile"] == 0.5 and len(o["values"]) == 5
        np.testing.assert_allclose(o["values"], row, rtol=1e-5, atol=1e-6)
    assert [o["fallback"] for o in out] == [False, True, True, False]
    assert out[1]["drivers"] == [] and out[2]["drivers"] == []
    p90 = explain_forecast(fc, ids[:3], 7, quantile=0.9)
    np.testing.assert_allclose([o["values"] for o in p90], fc.forecast(ids[:3], 7, [0.9])[:, 0, :], rtol=1e-5, atol=1e-6)


def test_effects_add_up_sorted_by_size_with_a_reference_each(fc) -> None:
    for o in fc.explain(known(fc), H):
        d = o["drivers"]
        assert {x["input"] for x in d} == set(GROUPS)
        assert [abs(x["effect"]) for x in d] == sorted((abs(x["effect"]) for x in d), reverse=True)
        assert all(len(x["by_step"]) == H and x["reference"] and x["effect"] == pytest.approx(np.mean(x["by_step"]))
                   for x in d)
        # exact Shapley: baseline + every driver's by_step is the forecast, step by step
        total = np.asarray(o["baseline"]) + np.sum([x["by_step"] for x in d], axis=0)
        np.testing.assert_allclose(total, o["values"], atol=1e-4)


def test_shapley_values_by_hand() -> None:
    # two players, v(0)=0, v({a})=1, v({b})=2, v({a,b})=5: phi_a = (1 + 3) / 2, phi_b = (2 + 4) / 2
    v = np.array([0.0, 1.0, 2.0, 5.0])[:, None]
    assert shapley_values(v)[:, 0].tolist() == [2.0, 3.0]
    # three players, additive: each gets exactly its own part
    parts = np.array([1.0, 10.0, 100.0])
    coal = ((np.arange(8)[:, None] >> np.arange(3)) & 1) @ parts
    np.testing.assert_allclose(shapley_values(coal[:, None])[:, 0], parts, rtol=1e-12)


def test_known_answers_flat_series_unchanged_price_and_a_tripled_last_week(fc) -> None:
    ids = known(fc)[:6]
    k = np.array([fc.items.index(i) for i in ids])
    tail = fc.tail_units.copy()
    level = np.maximum(fc.tail_units[k].mean(1), 2.0)
    tail[k[:3]] = level[:3, None]  # flat: the recent level is the earlier level, the profile is flat
    tail[k[3:]] = level[3:, None]
    tail[k[3:], -7:] *= 3.0  # last week three times the weeks before
    price = fc.price_rel.copy()
    price[k] = 0.0  # no price change: the price is not a driver
    out = {o["item_id"]: o for o in dataclasses.replace(fc, tail_units=tail, price_rel=price).explain(ids, H)}
    eff = {i: {d["input"]: d["effect"] for d in out[i]["drivers"]} for i in ids}
    for i in ids:
        assert eff[i]["price"] == 0.0  # a null player gets exactly nothing
    for i in ids[:3]:
        assert eff[i]["recent_level"] == 0.0
        assert abs(eff[i]["seasonal_values"]) < 1e-3 * max(1.0, np.mean(out[i]["values"]))
    for i in ids[3:]:
        assert eff[i]["recent_level"] > 0, eff[i]


def test_one_forward_pass_for_every_item_and_every_coalition(fc) -> None:
    calls: list[int] = []
    hook = fc.model.register_forward_hook(lambda mod, args, kwargs, out: calls.append(kwargs["item"].shape[0]),
                                          with_kwargs=True)
    try:
        ids = known(fc)[:5]
        fc.explain([*ids, "NEW"], 3)
        assert calls == [5 * 2 ** len(GROUPS)]
        calls.clear()
        fc.explain(["NEW", "OTHER"], 3)  # only fallbacks: no network at all
        assert calls == []
    finally:
        hook.remove()
    assert fc.explain([], 3) == []


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"horizon": 0}, "horizon"),
    ({"horizon": H + 1}, "horizon 8 exceeds"),
    ({"horizon": 3, "quantile": 1.5}, "quantile"),
    ({"horizon": 3, "quantile": 0.0}, "quantile"),
    ({"horizon": 3, "quantile": "0.5"}, "quantile"),
])
def test_bad_requests_name_the_field(fc, kwargs, match) -> None:
    horizon = kwargs.pop("horizon")
    with pytest.raises(ValueError, match=match):
        explain_forecast(fc, known(fc)[:2], horizon, **kwargs)


def test_top_driver_moves_p50_most_when_ablated_alone(fc) -> None:
    ids = known(fc)
    rows, v = coalition_forecasts(fc, ids, H, 0.5)
    full = v[:, -1]
    alone = {g: np.abs((full - v[:, (2 ** len(GROUPS) - 1) ^ (1 << j)]).mean(1)) for j, g in enumerate(GROUPS)}
    rng = np.random.default_rng(0)
    wins = []
    for r, o in enumerate(fc.explain(ids, H)):
        top = o["drivers"][0]["input"]
        other = rng.choice([g for g in GROUPS if g != top])
        wins.append(alone[top][r] > alone[other][r])
    rate = float(np.mean(wins))
    print(f"top driver moves p50 more than a random other group: {rate:.0%} of {len(wins)} items")
    assert len(wins) >= 15 and rate >= 0.8
