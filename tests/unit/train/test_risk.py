"""Risk model family without Ray: text, scaling, modes, calibration, threshold, serving contract, specs.

A tiny random BERT (real `transformers` BertModel, MiniLM's tokenizer) stands in for the
22M-parameter default so these tests stay fast; the integration test uses the real one.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from ecomine.data.cleaning import clean_frame
from ecomine.data.features import RISK_FEATURES, risk_examples
from ecomine.datasets.synthetic import SynthParams, generate
from ecomine.models.risk import (
    Calibrator,
    NumericScaler,
    RiskNet,
    RiskNetConfig,
    history_state,
    line_texts,
    load_risk_model,
    numeric_matrix,
    order_lines_frame,
    save_risk_model,
    validate_orders,
)
from ecomine.specs import SpecError, TrainSpec, load_spec
from ecomine.train.risk_eval import binary_metrics, choose_threshold, decision_report, format_report
from ecomine.train.risk_task import split_windows


@pytest.fixture(scope="module")
def tiny_encoder(tiny_encoder_factory) -> str:
    return tiny_encoder_factory(layers=2)


@pytest.fixture(scope="module")
def events() -> pl.DataFrame:
    ev, _ = clean_frame(generate(SynthParams(users=120, items=40, days=120, seed=5)).events, name="synthetic")
    return ev


def _config(encoder: str, mode: str = "frozen", **kw) -> RiskNetConfig:
    return RiskNetConfig(encoder=encoder, mode=mode, max_length=32, hidden=[16], **kw)


# --------------------------------------------------------------------------- text and numbers


def test_line_text_serialises_line_and_history_never_the_label(events: pl.DataFrame) -> None:
    ex = risk_examples(events, horizon_days=30)
    row = ex.filter(pl.col("cust_prior_orders") > 2).head(1)
    text = line_texts(row, "line")[0]
    r = row.row(0, named=True)
    assert f"{r['quantity']} x " in text and f"{r['price']:.2f}" in text
    assert r["country"] in text and "prior order" in text and "customer for" in text
    assert "returned" not in text.split(";")[0]  # the label is not serialised
    assert line_texts(row, "item")[0] == " ".join(r["item_text"].split())
    with pytest.raises(ValueError, match="text: unknown kind 'words'"):
        line_texts(row, "words")


def test_scaler_standardises_and_flags_missing_values() -> None:
    raw = np.array([[1.0, np.nan], [3.0, 2.0], [7.0, np.nan], [15.0, 4.0]])
    s = NumericScaler.fit(raw, ["a", "b"])
    x = s.transform(raw)
    assert x.shape == (4, 4) and x.dtype == np.float32
    assert np.isfinite(x).all()
    np.testing.assert_allclose(x[:, 0].mean(), 0.0, atol=1e-6)
    np.testing.assert_array_equal(x[:, 3], [1, 0, 1, 0])  # b's missing indicator
    np.testing.assert_array_equal(x[[0, 2], 1], [0, 0])  # missing b -> 0 (the train mean)
    with pytest.raises(ValueError, match=r"expected \[n, 2\]"):
        s.transform(np.zeros((2, 3)))


# --------------------------------------------------------------------------- the module


@pytest.mark.parametrize("mode", ["frozen", "lora", "full"])
def test_modes_train_the_right_parameters(tiny_encoder: str, mode: str) -> None:
    model = RiskNet(_config(tiny_encoder, mode))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    head = {n for n in trainable if n.startswith(("head.", "text_norm."))}
    enc = trainable - head
    assert head == {n for n, _ in model.named_parameters() if n.startswith(("head.", "text_norm."))}
    if mode == "frozen":
        assert enc == set()
    elif mode == "lora":
        assert enc and all("lora_" in n for n in enc)
        assert any(".query." in n for n in enc) and any(".value." in n for n in enc) and not any(".key." in n for n in enc)
    else:
        assert enc == {f"encoder.{n}" for n, _ in model.encoder.named_parameters()}
    b = 5
    ids = torch.randint(5, 1000, (b, 12))
    mask = torch.ones(b, 12, dtype=torch.long)
    num = torch.randn(b, model.config.n_numeric)
    z = model.logits(numeric=num, input_ids=ids, attention_mask=mask)
    assert z.shape == (b,)
    loss = model(labels=torch.tensor([0, 1, 0, 0, 1.0]), numeric=num, input_ids=ids, attention_mask=mask)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad and n.startswith("head."))
    z2 = model.logits(numeric=num, embeddings=torch.randn(b, 32))  # cached vectors skip the encoder
    assert z2.shape == (b,)


def test_frozen_encoder_stays_in_eval_mode(tiny_encoder: str) -> None:
    model = RiskNet(_config(tiny_encoder, "frozen")).train()
    assert model.head.training and not model.encoder.training


# --------------------------------------------------------------------------- calibration and threshold


def test_calibration_lowers_brier_of_a_miscalibrated_score() -> None:
    rng = np.random.default_rng(0)
    true_logit = rng.normal(-3.0, 1.5, 20_000)
    y = (rng.random(true_logit.size) < 1 / (1 + np.exp(-true_logit))).astype(float)
    score = 3.0 * true_logit  # overconfident: what temperature scaling is for
    fit, held = slice(0, 10_000), slice(10_000, None)
    raw = binary_metrics(y[held], Calibrator("none")(score[held]))["brier"]
    for kind in ("temperature", "platt", "isotonic"):
        cal = Calibrator.fit(kind, score[fit], y[fit])
        after = binary_metrics(y[held], cal(score[held]))["brier"]
        assert after < raw * 0.9, (kind, after, raw)
        again = Calibrator(**cal.to_json())  # JSON round trip gives the same map
        np.testing.assert_allclose(again(score[held]), cal(score[held]))
    assert Calibrator.fit("temperature", score[fit], y[fit]).params["temperature"] > 2.0


def test_threshold_rules_on_a_hand_example() -> None:
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    y = np.array([1, 1, 0, 1, 0, 0])
    # precision by threshold: .9 -> 1, .8 -> 1, .7 -> 2/3, .6 -> 3/4, .5 -> 3/5, .4 -> 1/2
    t = choose_threshold(y, p, target_precision=0.75)
    assert t["threshold"] == 0.6 and t["met"] and t["valid_precision"] == 0.75 and t["valid_recall"] == 1.0
    assert choose_threshold(y, p, target_precision=0.95)["threshold"] == 0.8
    # cost 5*FN + FP: .9 -> 10, .8 -> 5, .7 -> 6, .6 -> 1 (least), .5 -> 2
    assert choose_threshold(y, p, cost_ratio=5.0)["threshold"] == 0.6
    # false alarms 100x dearer than misses: flag only the lines no negative outranks
    assert choose_threshold(y, p, cost_ratio=0.01)["threshold"] == 0.8
    # when every threshold costs more than flagging nothing: a threshold above every probability
    assert choose_threshold(np.array([0, 1]), np.array([0.9, 0.5]), cost_ratio=0.5)["threshold"] > 0.9
    rep = decision_report(y, p, 0.6)
    assert (rep["tp"], rep["fp"], rep["fn"], rep["tn"]) == (3, 1, 0, 2)
    assert rep["classification_report"]["returned"]["precision"] == 0.75
    with pytest.raises(ValueError, match="exactly one"):
        choose_threshold(y, p)


def test_metrics_without_positives_are_nan_not_a_crash() -> None:
    m = binary_metrics(np.zeros(4), np.full(4, 0.1))
    assert math.isnan(m["roc_auc"]) and math.isnan(m["pr_auc"]) and m["brier"] == pytest.approx(0.01)
    format_report({"risk_model": m}, title="t")  # renders with missing columns


# --------------------------------------------------------------------------- serving contract


def test_served_features_match_the_training_features(events: pl.DataFrame) -> None:
    """No train/serve skew: a line scored from the saved history state gets risk_examples' features."""
    ex = risk_examples(events, horizon_days=30)
    firsts = events.filter(pl.col("event") == "purchase").group_by("order_id").agg(pl.col("ts").min())
    line = ex.join(firsts, on=["order_id", "ts"]).filter(pl.col("cust_prior_orders") > 1).sort("ts").tail(1)
    r = line.row(0, named=True)
    customers, items = history_state(events.filter(pl.col("ts") < r["ts"]))
    order = validate_orders([{"order_id": "o", "user_id": r["user_id"], "ts": r["ts"], "country": None,
                              "lines": [{"item_id": r["item_id"], "quantity": r["quantity"], "price": r["price"]}]}])
    served = order_lines_frame(order, customers, items)
    np.testing.assert_allclose(numeric_matrix(served), numeric_matrix(line), rtol=1e-9, equal_nan=True)
    assert served["country"][0] == r["country"]  # the customer's usual country when the order names none


@pytest.fixture(scope="module")
def saved(tiny_encoder: str, events: pl.DataFrame, tmp_path_factory) -> Path:
    ex = risk_examples(events, horizon_days=30)
    scaler = NumericScaler.fit(numeric_matrix(ex), list(RISK_FEATURES))
    torch.manual_seed(0)
    model = RiskNet(_config(tiny_encoder, "lora", logit_offset=-2.0))
    customers, items = history_state(events)
    folder = tmp_path_factory.mktemp("risk-version")
    save_risk_model(folder, model, scaler=scaler, calibrator=Calibrator("temperature", {"temperature": 1.5}),
                    threshold=0.2, customers=customers, items=items)
    return folder


@pytest.fixture(scope="module")
def loaded(saved: Path):
    return load_risk_model(saved)


def _order(**kw):
    base = {"order_id": "o1", "user_id": "U00001", "ts": datetime(2023, 5, 1, 10, tzinfo=timezone.utc),
            "country": None, "lines": [{"item_id": "I00001", "quantity": 2, "price": 3.5}]}
    return {**base, **kw}


def test_saved_version_loads_and_scores_orders(saved: Path) -> None:
    assert not list(saved.rglob("*.pkl")) and not list(saved.rglob("*.bin"))
    m = load_risk_model(saved)
    assert m.threshold == 0.2
    two = _order(lines=[{"item_id": "I00001", "quantity": 2, "price": 3.5}, {"item_id": "I00002", "quantity": 1}])
    p = m.score([_order(), _order(lines=[{"item_id": "I00002", "quantity": 1}]), two])
    assert p.shape == (3,) and np.all((p > 0) & (p < 1))
    assert p[2] == pytest.approx(1 - (1 - p[0]) * (1 - p[1]))  # P(any line returned)
    # unknown customer / item, no time: documented defaults, not errors
    unknown = m.score([_order(user_id="nobody"), _order(user_id=None), _order(ts=None, lines=[{"item_id": "NEW-1"}])])
    assert unknown[0] == pytest.approx(unknown[1]) and np.isfinite(unknown).all()
    assert m.score([]).shape == (0,)
    # what the HTTP layer hands the deployment: RiskRequest dumped in python or JSON mode
    from ecomine.api.schema import RiskRequest

    req = RiskRequest(orders=[_order(), _order(ts=None, user_id=None, lines=[{"item_id": "I00003"}])])
    for mode in ("python", "json"):
        got = m.score(req.model_dump(mode=mode)["orders"])
        assert got.shape == (2,) and got[0] == pytest.approx(p[0])


@pytest.mark.parametrize(
    ("order", "field"),
    [
        (_order(lines=[{"item_id": "I00001", "quantity": -2}]), r"orders\[0\]\.lines\[0\]\.quantity"),
        (_order(lines=[{"item_id": "I00001", "quantity": 0}]), r"orders\[0\]\.lines\[0\]\.quantity"),
        (_order(lines=[{"quantity": 1}]), r"orders\[0\]\.lines\[0\]\.item_id"),
        (_order(lines=[{"item_id": "I1", "price": float("nan")}]), r"orders\[0\]\.lines\[0\]\.price"),
        (_order(lines=[{"item_id": "I1", "price": -1.0}]), r"orders\[0\]\.lines\[0\]\.price"),
        (_order(lines=[]), r"orders\[0\]\.lines"),
        ({"order_id": "x", "user_id": "U1"}, r"orders\[0\]\.lines"),
        (_order(ts="yesterday"), r"orders\[0\]\.ts"),
        (_order(user_id=17850), r"orders\[0\]\.user_id"),
        ("not an order", r"orders\[0\]: expected a dict"),
    ],
)
def test_bad_orders_name_the_field(loaded, order, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        loaded.score([order])


# --------------------------------------------------------------------------- specs


def _spec(model: dict) -> TrainSpec:
    return TrainSpec.model_validate({"task": "risk", "data": {"kind": "synthetic"}, "model": model})


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"threshold": {"cost_ratio": 5, "target_precision": 0.5}}, "exactly one of target_precision or cost_ratio"),
        ({"threshold": {}}, "exactly one of target_precision or cost_ratio"),
        ({"pos_weight": 0}, "pos_weight must be > 0"),
        ({"pos_weight": "balanced"}, "pos_weight"),
        ({"mode": "qlora"}, "mode"),
        ({"negative_sample": 0}, "negative_sample"),
        ({"hidden": [64, 0]}, "hidden sizes must be >= 1"),
        ({"split": {"train_end": "2011-09-01", "test_start": "2011-08-01"}}, "train_end 2011-09-01 must not be after"),
        ({"calibration": "beta"}, "calibration"),
    ],
)
def test_bad_risk_specs_name_the_field(model: dict, message: str) -> None:
    with pytest.raises(Exception, match=message):
        _spec(model)


def test_risk_spec_yaml_round_trips_and_rejects_other_tasks_metrics(tmp_path: Path) -> None:
    from ecomine.specs import dump_spec

    spec = _spec({"mode": "lora", "pos_weight": "auto", "threshold": {"target_precision": 0.3},
                  "split": {"train_end": "2011-06-02", "test_start": "2011-08-01", "test_end": "2011-10-10"}})
    p = tmp_path / "s.yaml"
    p.write_text(dump_spec(spec))
    assert load_spec(p, TrainSpec) == spec
    assert spec.watch() == ("pr_auc", "max")
    p.write_text(dump_spec(spec) + "optim:\n  early_stopping: {metric: ndcg@10}\n")
    with pytest.raises(SpecError, match="ndcg@10"):
        load_spec(p, TrainSpec)


def test_split_windows_count_back_and_refuse_a_too_short_log() -> None:
    first = datetime(2023, 1, 1, tzinfo=timezone.utc)
    last = first + timedelta(days=364)
    w = split_windows(_spec({"horizon_days": 30}).model, first, last)
    assert w["test_end"] == datetime(2023, 12, 1, tzinfo=timezone.utc)
    assert w["test_start"] == w["test_end"] - timedelta(days=60) == w["label_cutoff"]
    assert w["train_end"] == w["test_start"] - timedelta(days=30)
    with pytest.raises(ValueError, match="model.split: training would end before it starts"):
        split_windows(_spec({}).model, first, first + timedelta(days=120))


# --------------------------------------------------------------------------- the task without Ray


def test_lora_task_prepares_trains_evaluates_saves_and_loads(tiny_encoder: str, tmp_path: Path) -> None:
    """The lora / line-text path of the Task protocol on a tiny log (Ray runs the same calls per worker)."""
    from ecomine.train.risk_eval import MODEL_NAME
    from ecomine.train.risk_task import TASK, predict_logits

    spec = TrainSpec.model_validate({
        "task": "risk", "data": {"kind": "synthetic", "users": 120, "items": 40, "days": 120, "seed": 5},
        "model": {"text_encoder": tiny_encoder, "mode": "lora", "text": "line", "max_length": 48, "hidden": [16],
                  "horizon_days": 10, "negative_sample": 0.5, "pos_weight": "auto",
                  "split": {"test_days": 20, "valid_days": 15}},
        "optim": {"batch_size": 32},
    })
    data = TASK.prepare(spec)
    assert data.embeddings is None and data.input_ids.shape == (len(data.texts), 48)
    n_neg = int((data.train.labels == 0).sum())
    kept_neg = int((data.train.labels[data.train_index] == 0).sum())
    assert 0.35 * n_neg < kept_neg < 0.65 * n_neg and data.train.labels[data.train_index].sum() == data.train.labels.sum()
    # the prior correction: sampled negatives and weighted positives are taken back out of the logit
    assert data.pos_weight == pytest.approx(kept_neg / data.train.labels.sum())
    assert data.logit_offset == pytest.approx(np.log(kept_neg / n_neg) - np.log(data.pos_weight))
    model = TASK.build_model(spec, data, None)
    batch = TASK.batch(data, np.arange(8), torch.device("cpu"))
    assert batch["input_ids"].shape[1] <= 48 and set(batch) == {"numeric", "input_ids", "attention_mask", "labels"}
    loss = model(**batch)
    loss.backward()
    assert all((p.grad is not None) == p.requires_grad for p in model.parameters())
    assert len(predict_logits(model, data, data.test)) == len(data.test)
    results = TASK.evaluate(model, data, spec)
    assert set(results) == {MODEL_NAME, "logistic_regression", "lightgbm"}
    assert 0 < TASK.headline(results)["threshold"] <= 1
    TASK.save(tmp_path, model, data, spec)
    again = TASK.load(tmp_path, spec, data)
    np.testing.assert_allclose(predict_logits(again, data, data.valid), predict_logits(model, data, data.valid), rtol=1e-4, atol=1e-5)
    # a campaign trial changing only the sampling re-uses the prepared arrays
    trial = spec.model_copy(update={"model": spec.model.model_copy(update={"negative_sample": 1.0})})
    adapted = TASK.adapt(data, trial)
    assert adapted.input_ids is data.input_ids and len(adapted.train_index) == len(data.train)


def _threshold_sweep_by_hand(labels, probs, target_precision=None, cost_ratio=None):
    """The former hand-written sweep, the reference choose_threshold must keep agreeing with."""
    y, p = np.asarray(labels, np.int64), np.asarray(probs, np.float64)
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(ps) != 0), len(ps) - 1]
    tp = np.cumsum(ys)[last]
    fp = (last + 1) - tp
    thr = ps[last]
    if target_precision is not None:
        precision = tp / (tp + fp)
        ok = np.flatnonzero(precision >= target_precision)
        k = ok[-1] if len(ok) else int(np.argmax(precision))
        return float(thr[k]), float(precision[k]), float(tp[k] / y.sum())
    cost = cost_ratio * (y.sum() - tp) + fp
    k = int(np.argmin(cost))
    return (float(np.nextafter(ps[0], np.inf)), None, None) if cost_ratio * y.sum() <= cost[k] else (
        float(thr[k]), float(tp[k] / (tp[k] + fp[k])), float(tp[k] / y.sum()))


@pytest.mark.parametrize("seed", range(6))
def test_threshold_sweep_through_sklearn_matches_the_hand_sweep(seed) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    y = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(np.int64)
    y[0] = 1
    p = np.clip(0.3 * y + rng.random(n) * 0.7, 0, 1)
    if seed % 2:
        p = np.round(p, 1)  # many ties
    for rule in ({"target_precision": 0.5}, {"target_precision": 0.8}, {"target_precision": 0.999},
                 {"cost_ratio": 0.2}, {"cost_ratio": 1.0}, {"cost_ratio": 7.0}):
        got = choose_threshold(y, p, **rule)
        want = _threshold_sweep_by_hand(y, p, **rule)
        assert got["threshold"] == want[0], rule
        if want[1] is not None:
            assert got["valid_precision"] == pytest.approx(want[1]) and got["valid_recall"] == pytest.approx(want[2])


def test_reliability_bins_agree_with_sklearns_calibration_curve() -> None:
    from sklearn.calibration import calibration_curve

    from ecomine.train.risk_eval import reliability_bins

    rng = np.random.default_rng(3)
    p = rng.beta(1, 6, size=2000)
    y = (rng.random(2000) < p).astype(np.int64)
    bins = reliability_bins(y, p, n_bins=10)
    frac, mean = calibration_curve(y, p, n_bins=10, strategy="quantile")
    np.testing.assert_allclose(bins["mean_predicted"], mean)
    np.testing.assert_allclose(bins["fraction_positive"], frac)
    assert sum(bins["count"]) == 2000 and len(bins["count"]) == 10
