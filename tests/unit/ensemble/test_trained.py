"""`model.forecaster: ensemble`: what the spec accepts and refuses, and the members' specs it derives (no Ray here;
the run itself is in tests/integration/test_train_demand.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ecomine.ensemble.trained import member_spec
from ecomine.specs import SpecError, TrainSpec


def _spec(**model):
    return TrainSpec.model_validate({
        "task": "demand", "data": {"kind": "synthetic", "users": 300, "items": 10, "days": 120, "seed": 1},
        "model": {"forecaster": "ensemble", "horizon": 7, "context_length": 28,
                  "eval": {"lightgbm_rounds": 40, "lightgbm_max_rows": 5000}, **model},
        "run": {"name": "ens", "registry": "reg", "tags": ["nightly"]},
    })


def test_members_share_the_run_and_the_booster_is_the_reports_baseline():
    spec = _spec()
    neural, booster = member_spec(spec, "patchtst", "ens"), member_spec(spec, "lightgbm", "ens")
    assert neural.model.forecaster == "patchtst" and neural.model.lightgbm is None
    assert booster.model.forecaster == "lightgbm"
    assert (booster.model.lightgbm.rounds, booster.model.lightgbm.max_rows) == (40, 5000)
    for m, kind in ((neural, "patchtst"), (booster, "lightgbm")):
        assert m.run.name == f"ens-{kind}" and m.run.tags == ["nightly", "member", "member-of:ens"]
        assert (m.model.horizon, m.model.context_length, m.data) == (7, 28, spec.data)


def test_the_boosters_own_settings_win():
    booster = member_spec(_spec(lightgbm={"rounds": 25, "num_leaves": 7}), "lightgbm", "ens")
    assert (booster.model.lightgbm.rounds, booster.model.lightgbm.num_leaves) == (25, 7)


def test_an_ensemble_run_must_register_and_read_the_boosters_history():
    with pytest.raises(ValidationError, match="run.register_model"):
        TrainSpec.model_validate({**_spec().model_dump(mode="json"), "run": {"register_model": False}})
    with pytest.raises(ValidationError, match=r"context_length \(14\): forecaster ensemble reads 28"):
        _spec(context_length=14, patch_length=7)
    with pytest.raises(ValidationError, match="forecaster lightgbm or ensemble"):
        TrainSpec.model_validate({**_spec().model_dump(mode="json"),
                                  "model": {**_spec().model.model_dump(mode="json"), "forecaster": "patchtst",
                                            "lightgbm": {"rounds": 20}}})


def test_run_training_sends_an_ensemble_spec_up_before_starting_ray():
    from ecomine.train.runner import run_training

    with pytest.raises(SpecError, match="model.forecaster: ensemble .* `ecomine train`"):
        run_training(_spec())
