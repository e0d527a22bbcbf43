"""The LightGBM risk version: fit on the risk task's split, save/load round trip, served scores, spec errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecomine.specs import SpecError, TrainSpec, load_spec


def risk_lightgbm_spec(registry: Path, **model) -> TrainSpec:
    """A tiny synthetic log with enough returns in every split (~2-5 %)."""
    return TrainSpec.model_validate({
        "task": "risk", "data": {"kind": "synthetic", "users": 600, "items": 40, "days": 150, "seed": 5},
        "model": {"classifier": "lightgbm", "lightgbm": {"rounds": 40, "min_data_in_leaf": 10}, "horizon_days": 30,
                  "pos_weight": "auto", "split": {"test_days": 30, "valid_days": 20}, **model},
        "run": {"registry": str(registry)},
    })


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    from ecomine.train.risk_task import TASK, fit_lightgbm_classifier

    spec = risk_lightgbm_spec(tmp_path_factory.mktemp("reg"))
    data = TASK.prepare(spec)
    return spec, data, fit_lightgbm_classifier(spec, data)


def _orders(data) -> list[dict]:
    keys = data.test_keys
    return [
        {"order_id": "o1", "user_id": keys["user_id"][0], "ts": "2024-03-01T10:00:00",
         "lines": [{"item_id": keys["item_id"][0], "quantity": 3}, {"item_id": keys["item_id"][1], "quantity": 1}]},
        # unknown customer and an unknown item without a price: no history, null item features (as the LM path)
        {"order_id": "o2", "user_id": "never-seen", "country": "Nowhere",
         "lines": [{"item_id": "no-such-item", "quantity": 1}, {"item_id": keys["item_id"][2], "quantity": 12, "price": 4.5}]},
        {"order_id": "o3", "lines": [{"item_id": keys["item_id"][3], "quantity": 1, "price": 0.0}]},  # no customer at all
    ]


def test_prepare_for_lightgbm_reads_no_text(fitted) -> None:
    _, data, booster = fitted
    assert data.embeddings is None and data.input_ids is None and data.texts == []
    assert booster.config.features == data.scaler.names
    assert data.valid.labels.sum() > 0 and data.test.labels.sum() > 0


def test_save_load_round_trip_scores_identically_and_serves_unknowns(fitted, tmp_path: Path) -> None:
    from ecomine.models.risk import load_risk_model
    from ecomine.models.risk_lightgbm import BOOSTER_FILE, LightGBMRiskModel
    from ecomine.train.risk_task import TASK, predict_logits

    spec, data, booster = fitted
    TASK.save(tmp_path, booster, data, spec)
    names = {p.name for p in tmp_path.iterdir()}
    assert not any(n.endswith((".pkl", ".pickle", ".joblib")) for n in names)
    assert (tmp_path / BOOSTER_FILE).read_text().startswith("tree")  # LightGBM's own text format
    loaded = load_risk_model(tmp_path)  # the serve loader (DEFAULT_LOADERS["risk"]) dispatches on lightgbm.json
    assert isinstance(loaded, LightGBMRiskModel) and not hasattr(loaded, "explain")
    cal, thr = TASK.calibrate(booster, data, spec)
    assert loaded.threshold == pytest.approx(thr["threshold"])
    # the same lines score the same before and after the round trip
    np.testing.assert_array_equal(loaded.booster.logits(data.test.raw), predict_logits(booster, data, data.test))
    orders = _orders(data)
    fresh = LightGBMRiskModel(booster, cal, thr["threshold"], data.customers, data.items)
    p = loaded.score(orders)
    np.testing.assert_array_equal(p, fresh.score(orders))
    assert p.shape == (3,) and np.all((p >= 0) & (p <= 1)) and np.all(np.isfinite(p))
    assert loaded.score([]).shape == (0,)
    with pytest.raises(ValueError, match=r"orders\[0\]\.lines\[0\]\.quantity"):
        loaded.score([{"lines": [{"item_id": "x", "quantity": 0}]}])


def test_report_has_the_model_beside_the_baselines_and_probabilities_calibrated(fitted) -> None:
    from ecomine.train.risk_eval import MODEL_NAME
    from ecomine.train.risk_task import TASK

    spec, data, booster = fitted
    results = TASK.evaluate(booster, data, spec)
    assert {MODEL_NAME, "logistic_regression", "lightgbm"} <= set(results)
    r = results[MODEL_NAME]
    assert 0 <= r["mean_probability"] <= 1 and r["n"] == len(data.test)
    assert r["roc_auc"] > 0.5  # it learnt something on the synthetic log


def test_train_registers_a_lightgbm_version_without_ray(tmp_path: Path, monkeypatch) -> None:
    import ecomine.train.runner as runner
    from ecomine.models.risk import load_risk_model
    from ecomine.registry import Registry

    monkeypatch.setattr(runner, "ensure_ray", lambda *a, **k: pytest.fail("a LightGBM risk spec started Ray"))
    spec = risk_lightgbm_spec(tmp_path / "reg")
    out = runner.run_training(spec)
    mv = Registry(tmp_path / "reg").get("risk", out.version)
    assert "lightgbm" in mv.tags and mv.metrics["test"]["pr_auc"] == pytest.approx(out.results["risk_model"]["pr_auc"])
    assert TrainSpec.model_validate(mv.spec).model.classifier == "lightgbm"  # the spec round-trips from the registry
    assert load_risk_model(Registry(tmp_path / "reg").fetch("risk", out.version)).score(
        [{"lines": [{"item_id": "a", "quantity": 1}]}]).shape == (1,)


@pytest.mark.parametrize("model, field", [
    ({"kind": "risk", "classifier": "xgboost"}, "classifier"),
    ({"kind": "risk", "lightgbm": {"rounds": 50}}, "lightgbm"),
    ({"kind": "risk", "classifier": "lightgbm", "lightgbm": {"num_leaves": 1}}, "num_leaves"),
    ({"kind": "risk", "classifier": "lightgbm", "numeric_features": False}, "numeric_features"),
    ({"kind": "recommend", "classifier": "lightgbm"}, "classifier"),
])
def test_bad_lightgbm_settings_name_the_field(tmp_path: Path, model: dict, field: str) -> None:
    import yaml

    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({"task": model["kind"], "data": {"kind": "synthetic"}, "model": model}))
    with pytest.raises(SpecError, match=field):
        load_spec(path, TrainSpec)
