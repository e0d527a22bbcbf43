"""Demand and risk ensembles: quantile weights by validation pinball, risk mixtures recalibrated; both served by id."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ecomine.specs import EnsembleSpec, TrainSpec


def _register(registry, task, spec, data, model, version):
    with tempfile.TemporaryDirectory() as tmp:
        task.save(Path(tmp), model, data, spec)
        registry.register(spec.task, tmp, spec=spec.model_dump(mode="json"), data_fingerprint=task.fingerprint(data),
                          metrics={}, version=version)


def _fit(task, spec, data, seed: int, steps: int):
    torch.manual_seed(seed)
    model = task.build_model(spec, data, None)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    order = np.random.default_rng(seed).permutation(task.num_examples(data))
    model.train()
    for s in range(0, min(len(order), 64 * steps), 64):
        loss = model(**task.batch(data, order[s:s + 64], "cpu"))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_demand_ensemble_weights_quantiles_by_validation_pinball_and_serves(tmp_path):
    from ecomine.ensemble.build import build_ensemble
    from ecomine.registry import Registry
    from ecomine.predict.demand_task import run as _run_demand
    from ecomine.predict.runtime import load_state
    from ecomine.train.demand_task import TASK

    spec = TrainSpec.model_validate({
        "task": "demand", "data": {"kind": "synthetic", "users": 600, "items": 20, "days": 200, "seed": 2},
        "model": {"horizon": 7, "context_length": 28, "d_model": 16, "heads": 2, "layers": 1, "top_items": None,
                  "eval": {"lightgbm": False, "test_periods": 28}},
        "optim": {"epochs": 1, "batch_size": 64}, "run": {"registry": str(tmp_path / "reg")},
    })
    data = TASK.prepare(spec)
    registry = Registry(tmp_path / "reg")
    _register(registry, TASK, spec, data, _fit(TASK, spec, data, 0, 20), "dem-a")
    _register(registry, TASK, spec, data, _fit(TASK, spec, data, 1, 20), "dem-b")
    untrained = TASK.build_model(spec, data, None).eval()
    with torch.no_grad():  # a member that forecasts far too much: the fit must all but drop it
        for p in untrained.parameters():
            p.add_(torch.randn_like(p) * 2.0)
    _register(registry, TASK, spec, data, untrained, "dem-noise")
    ens = EnsembleSpec.model_validate({"task": "demand", "registry": str(tmp_path / "reg"),
                                       "members": [{"version": v} for v in ("dem-a", "dem-b", "dem-noise")]})
    outcome = build_ensemble(ens)
    weights = {m["version"]: m["weight"] for m in outcome.members}
    assert sum(weights.values()) == pytest.approx(1.0)
    fit = registry.get("demand", outcome.version).metrics["fit"]
    # the fitted mixture is no worse on validation than its best member (the LP optimum includes each vertex)
    assert fit["validation_pinball"] <= min(fit["member_validation_pinball"]) + 1e-9
    assert weights["dem-noise"] < 0.01  # ~500,000x worse on validation: dropped
    assert "ensemble" in outcome.results and "seasonal_naive" in outcome.results
    state = load_state(registry, "demand", [(outcome.version, 1.0)])
    assert state.versions == ["dem-a", "dem-b", "dem-noise"]
    (answer,) = _run_demand(state, [(data.items[:3], 4, [0.1, 0.5, 0.9])])
    values = np.array([f["values"] for f in answer["forecasts"]])
    assert values.shape == (3, 3, 4) and np.all(np.diff(values, axis=1) >= 0)
    # two seeds as one group: averaged, one fitted weight split equally between them
    grouped = EnsembleSpec.model_validate({"task": "demand", "registry": str(tmp_path / "reg"), "members": [
        {"version": "dem-a", "group": "seeds"}, {"version": "dem-b", "group": "seeds"}, {"version": "dem-noise"}]})
    outcome = build_ensemble(grouped)
    weights = {m["version"]: m["weight"] for m in outcome.members}
    fit = registry.get("demand", outcome.version).metrics["fit"]
    assert len(fit["group_weights"]) == 2 and sum(weights.values()) == pytest.approx(1.0)
    assert weights["dem-a"] == pytest.approx(weights["dem-b"]) == pytest.approx(fit["group_weights"][0] / 2)
    assert weights["dem-noise"] < 0.01


def test_risk_ensemble_is_recalibrated_and_served_with_its_threshold(tmp_path):
    from transformers import AutoTokenizer, BertConfig, BertModel

    from ecomine.registry import read_ensemble
    from ecomine.ensemble.build import build_ensemble
    from ecomine.models.text_encoder import resolve_encoder
    from ecomine.registry import Registry
    from ecomine.predict.runtime import load_state
    from ecomine.train.risk_task import TASK

    enc = tmp_path / "tiny-bert"
    tok = AutoTokenizer.from_pretrained(resolve_encoder("default"))
    tok.save_pretrained(str(enc))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(str(enc))
    spec = TrainSpec.model_validate({
        "task": "risk", "data": {"kind": "synthetic", "users": 120, "items": 40, "days": 120, "seed": 5},
        "model": {"text_encoder": str(enc), "mode": "frozen", "max_length": 32, "hidden": [16], "horizon_days": 10,
                  "pos_weight": "auto", "split": {"test_days": 20, "valid_days": 15}},
        "optim": {"batch_size": 32}, "run": {"registry": str(tmp_path / "reg")},
    })
    data = TASK.prepare(spec)
    registry = Registry(tmp_path / "reg")
    _register(registry, TASK, spec, data, _fit(TASK, spec, data, 0, 30), "risk-a")
    _register(registry, TASK, spec, data, _fit(TASK, spec, data, 1, 30), "risk-b")
    ens = EnsembleSpec.model_validate({"task": "risk", "registry": str(tmp_path / "reg"),
                                       "members": [{"version": "risk-a"}, {"version": "risk-b"}]})
    outcome = build_ensemble(ens)
    manifest = read_ensemble(registry.fetch("risk", outcome.version))
    assert manifest.recalibration is not None and 0 < manifest.threshold <= 1
    assert sum(m.weight for m in manifest.members) == pytest.approx(1.0)
    assert {"ensemble", "logistic_regression", "lightgbm"} <= set(outcome.results)
    state = load_state(registry, "risk", [(outcome.version, 1.0)])
    assert state.extra["threshold"] == pytest.approx(manifest.threshold)
    assert state.extra["recalibration"] == pytest.approx(manifest.recalibration)
