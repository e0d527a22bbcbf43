"""A risk ensemble of an encoder (LM) version and a LightGBM version: built like the CLI builds it, served by id."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ecomine.specs import EnsembleSpec, SpecError, TrainSpec

DATA = {"kind": "synthetic", "users": 600, "items": 40, "days": 150, "seed": 5}
SPLIT = {"horizon_days": 30, "pos_weight": "auto", "split": {"test_days": 30, "valid_days": 20}}


@pytest.fixture(scope="module")
def tiny_encoder(tiny_encoder_factory) -> str:
    return tiny_encoder_factory(layers=1)


def _register(registry, task, spec, data, model, version: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        task.save(Path(tmp), model, data, spec)
        registry.register("risk", tmp, spec=spec.model_dump(mode="json"), data_fingerprint=task.fingerprint(data),
                          metrics={}, version=version)


@pytest.fixture(scope="module")
def registry_with_members(tmp_path_factory, tiny_encoder):
    from ecomine.registry import Registry
    from ecomine.train.risk_task import TASK, fit_lightgbm_classifier

    root = tmp_path_factory.mktemp("reg")
    registry = Registry(root)
    lm_spec = TrainSpec.model_validate({
        "task": "risk", "data": DATA, "run": {"registry": str(root)}, "optim": {"batch_size": 64},
        "model": {"text_encoder": tiny_encoder, "mode": "frozen", "text": "item", "max_length": 16, "hidden": [16], **SPLIT},
    })
    data = TASK.prepare(lm_spec)
    torch.manual_seed(0)
    model = TASK.build_model(lm_spec, data, None)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    for s in range(0, TASK.num_examples(data), 64):
        loss = model(**TASK.batch(data, np.arange(s, min(s + 64, TASK.num_examples(data))), "cpu"))
        opt.zero_grad()
        loss.backward()
        opt.step()
    _register(registry, TASK, lm_spec, data, model.eval(), "risk-lm")
    gbm_spec = TrainSpec.model_validate({
        "task": "risk", "data": DATA, "run": {"registry": str(root)},
        "model": {"classifier": "lightgbm", "lightgbm": {"rounds": 40, "min_data_in_leaf": 10}, **SPLIT},
    })
    gbm_data = TASK.prepare(gbm_spec)
    _register(registry, TASK, gbm_spec, gbm_data, fit_lightgbm_classifier(gbm_spec, gbm_data), "risk-gbm")
    return root, registry, data


def test_lm_plus_lightgbm_ensemble_builds_and_answers_through_the_runtime(registry_with_members) -> None:
    from ecomine.registry import read_ensemble
    from ecomine.ensemble.build import build_ensemble, versus_best_member
    from ecomine.models.risk import load_risk_model
    from ecomine.predict.runtime import build_state, load_state, run_jobs
    from ecomine.predict.state import Member

    root, registry, data = registry_with_members
    # the LightGBM member first: the build prepares its (text-free) data, and the LM member gets its own vectors
    ens = EnsembleSpec.model_validate({"task": "risk", "registry": str(root),
                                       "members": [{"version": "risk-gbm"}, {"version": "risk-lm"}]})
    outcome = build_ensemble(ens)
    manifest = read_ensemble(registry.fetch("risk", outcome.version))
    assert sum(m.weight for m in manifest.members) == pytest.approx(1.0)
    assert manifest.recalibration is not None and 0 < manifest.threshold <= 1
    assert {"ensemble", "logistic_regression", "lightgbm"} <= set(outcome.results)
    assert np.isfinite(versus_best_member("risk", outcome.results)[0]["ratio"])

    orders = [
        {"user_id": data.test_keys["user_id"][0], "lines": [{"item_id": data.test_keys["item_id"][0], "quantity": 2}]},
        {"user_id": "never-seen", "lines": [{"item_id": "no-such-item", "quantity": 1}]},
    ]
    state = load_state(registry, "risk", [(outcome.version, 1.0)])  # Serve's path: the ensemble version by id
    assert state.versions == ["risk-gbm", "risk-lm"]
    (served,) = run_jobs([(state, orders)])
    assert len(served) == 2 and all(0 <= p <= 1 for p in served)

    members = [Member(v, v, w, None, [], load_risk_model(registry.fetch("risk", v)))
               for v, w in (("risk-lm", 0.5), ("risk-gbm", 0.5))]
    plain = build_state("risk", members)
    assert 0 < plain.extra["threshold"] <= 1
    mixed = run_jobs([(plain, orders[:1]), (plain, orders[1:])])
    expect = 0.5 * members[0].obj.score(orders) + 0.5 * members[1].obj.score(orders)
    np.testing.assert_allclose([p for job in mixed for p in job], expect, rtol=1e-12)


def test_members_cut_on_different_splits_are_refused_naming_the_field(registry_with_members) -> None:
    from ecomine.ensemble.build import build_ensemble
    from ecomine.train.risk_task import TASK, fit_lightgbm_classifier

    root, registry, _ = registry_with_members
    other = TrainSpec.model_validate({
        "task": "risk", "data": DATA, "run": {"registry": str(root)},
        "model": {"classifier": "lightgbm", **{**SPLIT, "split": {"test_days": 30, "valid_days": 10}}},
    })
    d = TASK.prepare(other)
    _register(registry, TASK, other, d, fit_lightgbm_classifier(other, d), "risk-gbm-short-valid")
    ens = EnsembleSpec.model_validate({"task": "risk", "registry": str(root),
                                       "members": [{"version": "risk-lm"}, {"version": "risk-gbm-short-valid"}]})
    before = len(registry.list("risk"))
    with pytest.raises(SpecError, match=r"members\[1\]: model\.split differs"):
        build_ensemble(ens)
    assert len(registry.list("risk")) == before  # nothing registered
