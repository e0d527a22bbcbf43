"""The risk task through Ray Train end to end on the synthetic log with planted return drivers:
frozen all-MiniLM-L6-v2 + numeric features, calibrated, registered, loaded by the Serve loader."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from ecomine.datasets.synthetic import SynthParams, generate
from ecomine.models.risk import load_risk_model
from ecomine.registry import Registry
from ecomine.specs import TrainSpec
from ecomine.train.risk_eval import MODEL_NAME
from ecomine.train.risk_task import TASK, predict_logits
from ecomine.train.runner import run_training

pytestmark = pytest.mark.integration

DATA = {"kind": "synthetic", "users": 400, "items": 80, "days": 240, "seed": 1}


def make_spec(tmp_path: Path) -> TrainSpec:
    return TrainSpec.model_validate({
        "task": "risk",
        "data": DATA,
        # item titles as text: 80 unique texts through the real encoder, once
        "model": {"text": "item", "horizon_days": 30, "pos_weight": "auto", "calibration": "temperature",
                  "threshold": {"cost_ratio": 10}, "split": {"test_days": 40, "valid_days": 30}},
        "optim": {"epochs": 3, "batch_size": 128, "lr": 3e-3, "early_stopping": None},
        # one checkpoint at the end: each holds the encoder too (90 MB)
        "run": {"name": "risk-ci", "storage": str(tmp_path / "runs"), "registry": str(tmp_path / "registry"),
                "checkpoint_every": 3},
    })


def test_risk_trains_calibrates_registers_and_scores_orders(ray_session, tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    data = TASK.prepare(spec)
    out = run_training(spec, data=data)
    res = out.results[MODEL_NAME]
    assert [h["epoch"] for h in out.history] == [1, 2, 3]
    assert {"logistic_regression", "lightgbm"} <= set(out.results)
    # pos_weight=auto inflates the head's own probabilities; the prior correction + temperature fix that
    assert res["brier"] < res["uncalibrated"]["brier"], (res["brier"], res["uncalibrated"]["brier"])

    reg = Registry(spec.run.registry)
    folder = reg.fetch("risk", out.version)
    names = {p.name for p in folder.iterdir()}
    assert {"model.safetensors", "calibration.json", "scaler.json", "customers.parquet", "items.parquet",
            "report.json", "reliability.png", "manifest.json"} <= names
    model = load_risk_model(folder)
    assert 0 < model.threshold < 1

    # the model ranks the planted high-risk lines above the low-risk ones (truth: return_propensity)
    truth = generate(SynthParams(**{k: v for k, v in DATA.items() if k != "kind"})).return_propensity
    truth = truth.unique(["order_id", "item_id", "user_id"], keep="first")
    keys = data.test_keys.join(truth, on=["order_id", "item_id", "user_id"], how="left", maintain_order="left")
    assert keys["probability"].null_count() == 0
    p = model.calibrator(predict_logits(model.module, data, data.test))
    high = keys["probability"].to_numpy() > np.median(keys["probability"].to_numpy())
    from sklearn.metrics import roc_auc_score

    auc = roc_auc_score(high, p)
    assert auc > 0.7, auc

    # the loader's contract: order dicts in, one probability per order out (through Serve: test_demo, which
    # serves the demo's trained risk and demand models, and the retrain loop's risk pipeline)
    lines = data.test_keys.head(3).rows(named=True)
    orders = [{"order_id": r["order_id"], "user_id": r["user_id"], "ts": r["ts"] + timedelta(days=1), "country": None,
               "lines": [{"item_id": r["item_id"], "quantity": 1, "price": None}]} for r in lines]
    orders.append({"order_id": "guest", "user_id": None, "ts": None, "country": "France",
                   "lines": [{"item_id": "NEVER-SEEN", "quantity": 3, "price": 9.5}]})
    scores = model.score(orders)
    assert scores.shape == (4,) and np.all((scores > 0) & (scores < 1))
