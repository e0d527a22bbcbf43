"""Risk explanations (`ecomine.models.risk_explain`): faithful, complete, bounded, and refusing bad input.

A tiny real risk model (the tiny random BERT of `tests/unit/train/test_risk.py`, frozen,
its head trained here in a few hundred plain PyTorch steps on the synthetic log) is
explained over the test split's orders; faithfulness is checked against the model
itself: neutralising the top-attributed feature must move the line probability more
than neutralising a random other one.
"""

from __future__ import annotations


import numpy as np
import pytest
import torch

from ecomine.models.risk import Calibrator, OrderRiskModel, RiskNet, RiskNetConfig
from ecomine.models.risk_explain import explain_orders
from ecomine.models.risk_inputs import line_texts, numeric_matrix, order_lines_frame, validate_orders
from ecomine.specs import TrainSpec
from tests.unit.train import test_risk

tiny_encoder = test_risk.tiny_encoder  # the shared tiny BERT fixture


def _spec(encoder: str) -> TrainSpec:
    return TrainSpec.model_validate({
        "task": "risk", "data": {"kind": "synthetic", "users": 400, "items": 60, "days": 150, "seed": 5},
        "model": {"text_encoder": encoder, "mode": "frozen", "text": "line", "max_length": 48, "hidden": [16],
                  "horizon_days": 10, "pos_weight": "auto", "calibration": "temperature",
                  "split": {"test_days": 20, "valid_days": 15}},
        "optim": {"batch_size": 64},
    })


@pytest.fixture(scope="module")
def trained(tiny_encoder: str):
    """(served model, risk data): the head trained 10 epochs on cached text vectors (about a second)."""
    from transformers import AutoTokenizer

    from ecomine.train.risk_task import TASK

    spec = _spec(tiny_encoder)
    data = TASK.prepare(spec)
    torch.manual_seed(0)
    module = TASK.build_model(spec, data, None)
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=3e-3)
    rng = np.random.default_rng(0)
    module.train()
    n = TASK.num_examples(data)
    for _ in range(10):
        perm = rng.permutation(n)
        for s in range(0, n, 64):
            loss = module(**TASK.batch(data, perm[s : s + 64], torch.device("cpu")))
            opt.zero_grad()
            loss.backward()
            opt.step()
    cal, thr = TASK.calibrate(module.eval(), data, spec)
    model = OrderRiskModel(module, AutoTokenizer.from_pretrained(tiny_encoder), data.scaler, cal, thr["threshold"],
                           data.customers, data.items)
    return model, data


def _orders(data, limit: int = 30) -> list[dict]:
    out = []
    for (oid,), g in data.test_keys.group_by(["order_id"], maintain_order=True):
        r = g.row(0, named=True)
        out.append({"order_id": oid, "user_id": r["user_id"], "ts": r["ts"], "country": r.get("country"),
                    "lines": [{"item_id": x["item_id"], "quantity": x["quantity"], "price": x["price"]}
                              for x in g.iter_rows(named=True)]})
    return out[:limit]


@pytest.fixture(scope="module")
def explained(trained):
    model, data = trained
    orders = _orders(data)
    return orders, explain_orders(model, orders)


def _probabilities_with(model: OrderRiskModel, frame, numeric: np.ndarray) -> np.ndarray:
    """Calibrated line probabilities with the scaled numeric inputs replaced (the text as scored)."""
    emb = torch.from_numpy(model.embed(line_texts(frame, model.module.config.text)).astype(np.float32))
    with torch.no_grad():
        z = model.module.logits(numeric=torch.from_numpy(numeric), embeddings=emb).double().numpy()
    return model.calibrator(z + model.module.config.logit_offset)


def test_top_feature_moves_the_probability_more_than_a_random_one(trained, explained) -> None:
    model, _ = trained
    orders, out = explained
    frame = order_lines_frame(validate_orders(orders), model.customers, model.items)
    lines = [line for o in out for line in o["lines"]]
    assert len(lines) == frame.height >= 50
    names, width = model.scaler.names, len(model.scaler.names)
    x = model.scaler.transform(numeric_matrix(frame, names))
    p = _probabilities_with(model, frame, x)
    np.testing.assert_allclose(p, [line["probability"] for line in lines], rtol=1e-9)
    rng = np.random.default_rng(0)

    def moved(i: int, j: int) -> float:  # feature j of line i at its reference: scaled 0, not missing
        y = x.copy()
        y[i, [j, width + j]] = 0.0
        return abs(_probabilities_with(model, frame, y)[i] - p[i])

    wins = 0
    for i, line in enumerate(lines):
        top = names.index(line["features"][0]["name"])
        other = int(rng.choice([j for j in range(width) if j != top]))
        wins += moved(i, top) > moved(i, other)
    rate = wins / len(lines)
    print(f"faithfulness: top feature beats a random one in {rate:.1%} of {len(lines)} lines")
    assert rate >= 0.8


def test_contributions_add_up_to_the_gap_from_the_baseline(trained, explained) -> None:
    model, _ = trained
    orders, out = explained
    np.testing.assert_array_equal([o["probability"] for o in out], model.score(orders))
    assert [o["order_id"] for o in out] == [o["order_id"] for o in orders]
    rel = []
    for o in out:
        for line in o["lines"]:
            gap = line["probability"] - line["baseline_probability"]
            everything = sum(f["contribution"] for f in line["features"]) + line["text_contribution"]
            assert everything + line["residual"] == pytest.approx(gap, abs=1e-12)
            listed = sum(f["contribution"] for f in line["features"]) + sum(t["contribution"] for t in line["tokens"])
            assert listed + line["unlisted_contribution"] + line["residual"] == pytest.approx(gap, abs=1e-12)
            rel.append(abs(line["residual"]) / max(abs(gap), 1e-12))
    print(f"residual / |p - p_base| at the default steps: median {np.median(rel):.2e}, max {np.max(rel):.2e}")
    assert np.median(rel) < 1e-3 and np.max(rel) < 1e-2


def test_features_and_tokens_are_sorted_named_and_bounded(trained, explained) -> None:
    model, _ = trained
    orders, out = explained
    line = out[0]["lines"][0]
    assert set(line) == {"item_id", "probability", "baseline_probability", "features", "tokens", "text_contribution",
                         "unlisted_contribution", "residual"}
    assert line["item_id"] == orders[0]["lines"][0]["item_id"]
    assert sorted(f["name"] for f in line["features"]) == sorted(model.scaler.names)  # indicators folded in
    for o in out:
        for ln in o["lines"]:
            for key in ("features", "tokens"):
                mags = [abs(c["contribution"]) for c in ln[key]]
                assert mags == sorted(mags, reverse=True)
            assert 0 < len(ln["tokens"]) <= 8
            assert all(t["token"] and " " not in t["token"] for t in ln["tokens"])  # whole words, pieces merged
    # missing values (a customer without history has no return rate) are reported as None, never NaN
    new = explain_orders(model, [{**orders[0], "user_id": "nobody"}])[0]["lines"][0]["features"]
    values = {f["name"]: f["value"] for f in new}
    assert values["cust_prior_return_rate"] is None and values["cust_prior_orders"] == 0.0
    assert all(f["value"] is None or np.isfinite(f["value"]) for o in out for ln in o["lines"] for f in ln["features"])

    big = max(orders, key=lambda o: len(o["lines"]))
    assert len(big["lines"]) >= 2
    cut = explain_orders(model, [big], max_lines=1, max_tokens=3, max_features=4)[0]
    assert cut["truncated"] and len(cut["lines"]) == 1 and cut["probability"] == pytest.approx(model.score([big])[0])
    assert len(cut["lines"][0]["features"]) == 4 and len(cut["lines"][0]["tokens"]) == 3
    assert not explain_orders(model, [big], max_lines=len(big["lines"]))[0]["truncated"]


def test_numeric_only_path_keeps_the_baseline_and_adds_up(trained, explained) -> None:
    model, _ = trained
    orders, out = explained
    cheap = model.explain(orders[:5], max_tokens=0)
    for a, b in zip((ln for o in cheap for ln in o["lines"]), (ln for o in out[:5] for ln in o["lines"])):
        # the same line probability (the head's batch differs in size, so float32 rounding may too)
        assert a["tokens"] == [] and a["probability"] == pytest.approx(b["probability"], rel=1e-6)
        assert a["baseline_probability"] == pytest.approx(b["baseline_probability"], rel=1e-5)
        gap = a["probability"] - a["baseline_probability"]
        assert abs(a["residual"]) <= 1e-3 * abs(gap) + 1e-9
        assert sum(f["contribution"] for f in a["features"]) + a["text_contribution"] + a["residual"] == pytest.approx(gap)


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_lora_and_full_encoders_explain_through_a_step_calibrator(tiny_encoder: str, trained, mode: str) -> None:
    """An untrained head in the other modes, behind an isotonic (non-differentiable) calibrator."""
    base, data = trained
    torch.manual_seed(1)
    module = RiskNet(RiskNetConfig(encoder=tiny_encoder, mode=mode, max_length=48, hidden=[16]))
    iso = Calibrator("isotonic", {"x": [0.0, 0.3, 0.5, 0.7, 1.0], "y": [0.0, 0.1, 0.2, 0.6, 0.9]})
    model = OrderRiskModel(module, base.tokenizer, base.scaler, iso, 0.5, base.customers, base.items)
    orders = _orders(data, 4)
    out = model.explain(orders, steps=32)
    assert [o["probability"] for o in out] == pytest.approx(list(model.score(orders)))
    for o in out:
        for ln in o["lines"]:
            gap = ln["probability"] - ln["baseline_probability"]
            assert abs(ln["residual"]) <= 0.05 * abs(gap) + 1e-9
    assert not module.training


def test_bad_input_is_a_value_error_naming_the_field(trained) -> None:
    model, data = trained
    assert explain_orders(model, []) == []
    order = _orders(data, 1)[0]
    with pytest.raises(ValueError, match="orders: expected a list"):
        explain_orders(model, "not orders")
    with pytest.raises(ValueError, match=r"orders\[0\]\.lines\[0\]\.quantity"):
        explain_orders(model, [{**order, "lines": [{"item_id": "I00001", "quantity": 0}]}])
    for kw, name in (({"steps": 0}, "steps"), ({"max_lines": 0}, "max_lines"), ({"max_tokens": -1}, "max_tokens"),
                     ({"max_features": 1.5}, "max_features"), ({"steps": True}, "steps")):
        with pytest.raises(ValueError, match=f"^{name}: expected an integer"):
            explain_orders(model, [order], **kw)


def test_both_explain_paths_answer_one_three_line_order_line_by_line(trained) -> None:
    """Explain with words and the numeric-only path (max_tokens=0) answer every line of one 3-line order;
    what each costs against a plain score is measured in benchmarks/explain_faithfulness_risk.py, not here."""
    model, data = trained
    order = next(o for o in _orders(data, 200) if len(o["lines"]) >= 3)
    order = [{**order, "lines": order["lines"][:3]}]
    assert len(model.score(order)) == 1  # one probability per order
    assert len(model.explain(order)[0]["lines"]) == 3
    assert len(model.explain(order, max_tokens=0)[0]["lines"]) == 3
