"""Issue-15 figures for risk explanations: faithfulness (top vs random feature) and cost, synthetic and Online Retail.

For each log a risk model is trained without Ray (frozen all-MiniLM-L6-v2: its text
vectors computed once in `prepare`, then the head in plain PyTorch, a few epochs), its
test orders are explained (`ecomine.models.risk_explain`), and, per explained line, the
top-attributed numeric feature and a random other one are each set to the scaler's
reference: the issue's target is that the top one moves the calibrated probability more
in >= 80 % of lines. Also the residual (|p - p_base - sum of contributions| / |p - p_base|)
at several `steps`, and the p50 ms of score vs explain on one order of 3 lines.

    python benchmarks/explain_faithfulness_risk.py                    # both logs, ~5 minutes here
    python benchmarks/explain_faithfulness_risk.py --only synthetic   # or online-retail

Online Retail is bounded: item-title text (as benchmarks/risk_online_retail.py), training
capped at --max-train-lines, --orders test orders explained (their first 20 lines each).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _spec(name: str, args):
    from ecomine.specs import TrainSpec

    if name == "synthetic":
        data = {"kind": "synthetic", "users": 400, "items": 120, "days": 240, "seed": 0}
        model = {"text": "line", "max_length": 64, "horizon_days": 30, "split": {"test_days": 30, "valid_days": 30}}
    else:
        from risk_online_retail import ONLINE_RETAIL_RISK

        data, model = ONLINE_RETAIL_RISK["data"], ONLINE_RETAIL_RISK["model"]
    return TrainSpec.model_validate({
        "task": "risk", "data": data,
        "model": {**model, "mode": "frozen", "hidden": [64], "dropout": 0.1, "pos_weight": "auto",
                  "calibration": "temperature", "max_train_lines": args.max_train_lines},
        "optim": {"batch_size": 512, "seed": 0},
    })


def train_frozen(spec, epochs: int):
    """(OrderRiskModel, RiskData, timings): prepare, then the head alone in plain PyTorch."""
    import torch
    from transformers import AutoTokenizer

    from ecomine.models.risk import OrderRiskModel
    from ecomine.train.risk_eval import binary_metrics
    from ecomine.train.risk_task import TASK, predict_logits

    t0 = time.perf_counter()
    data = TASK.prepare(spec)
    prepare_s = time.perf_counter() - t0
    torch.manual_seed(0)
    module = TASK.build_model(spec, data, None)
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.01)
    rng, n, bs = np.random.default_rng(0), TASK.num_examples(data), spec.optim.batch_size
    t0 = time.perf_counter()
    module.train()
    for _ in range(epochs):
        perm = rng.permutation(n)
        for s in range(0, n, bs):
            loss = module(**TASK.batch(data, perm[s : s + bs], torch.device("cpu")))
            opt.zero_grad()
            loss.backward()
            opt.step()
    train_s = time.perf_counter() - t0
    cal, thr = TASK.calibrate(module.eval(), data, spec)
    test = binary_metrics(data.test.labels, cal(predict_logits(module, data, data.test)))
    model = OrderRiskModel(module, AutoTokenizer.from_pretrained(data.encoder), data.scaler, cal, thr["threshold"],
                           data.customers, data.items)
    info = {"prepare_s": prepare_s, "train_s": train_s, "train_lines": int(n), "test_lines": len(data.test),
            "test_roc_auc": test["roc_auc"], "test_pr_auc": test["pr_auc"], "unique_texts": len(data.texts)}
    return model, data, info


def test_orders(data, limit: int, seed: int = 0) -> list[dict]:
    """A seeded sample of the test split's orders as requests (their lines' keys, as a caller sends them)."""
    groups = list(data.test_keys.group_by(["order_id"], maintain_order=True))
    pick = np.random.default_rng(seed).permutation(len(groups))[:limit]
    out = []
    for k in sorted(pick):
        (oid,), g = groups[k]
        r = g.row(0, named=True)
        out.append({"order_id": oid, "user_id": r["user_id"], "ts": r["ts"], "country": r.get("country"),
                    "lines": [{"item_id": x["item_id"], "quantity": x["quantity"], "price": x["price"]}
                              for x in g.iter_rows(named=True)]})
    return out


def faithfulness(model, orders, explained, seed: int = 0) -> dict[str, float]:
    """Share of explained lines where the top feature at reference moves p more than a random other one."""
    import torch

    from ecomine.models.risk_inputs import line_texts, numeric_matrix, order_lines_frame, validate_orders

    frame = order_lines_frame(validate_orders(orders), model.customers, model.items)
    rank = frame.with_row_index("i").group_by("__order", maintain_order=True).head(20)["i"].to_numpy()
    frame = frame[rank]
    lines = [ln for o in explained for ln in o["lines"]]
    assert len(lines) == frame.height
    names, width = model.scaler.names, len(model.scaler.names)
    x = model.scaler.transform(numeric_matrix(frame, names))
    emb = torch.from_numpy(model.embed(line_texts(frame, model.module.config.text)).astype(np.float32))

    def prob(num: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            z = model.module.logits(numeric=torch.from_numpy(num), embeddings=emb).double().numpy()
        return model.calibrator(z + model.module.config.logit_offset)

    p = prob(x)
    rng = np.random.default_rng(seed)
    top_x, other_x = x.copy(), x.copy()
    for i, ln in enumerate(lines):
        top = names.index(ln["features"][0]["name"])
        other = int(rng.choice([j for j in range(width) if j != top]))
        top_x[i, [top, width + top]] = 0.0
        other_x[i, [other, width + other]] = 0.0
    d_top, d_other = np.abs(prob(top_x) - p), np.abs(prob(other_x) - p)
    moved = (d_top > 0) | (d_other > 0)
    return {"lines": len(lines), "rate": float(np.mean(d_top > d_other)),
            "rate_where_either_moves": float(np.mean(d_top[moved] > d_other[moved])) if moved.any() else float("nan")}


def residuals(explained) -> dict[str, float]:
    rel = np.array([abs(ln["residual"]) / max(abs(ln["probability"] - ln["baseline_probability"]), 1e-12)
                    for o in explained for ln in o["lines"]])
    return {"median": float(np.median(rel)), "p90": float(np.quantile(rel, 0.9)), "max": float(rel.max())}


def p50_ms(f, repeats: int) -> float:
    f()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def run(name: str, args) -> dict:
    from ecomine.models.risk_explain import explain_orders

    load = lambda: open("/proc/loadavg").read().split()[:3]  # noqa: E731
    model, data, info = train_frozen(_spec(name, args), args.epochs)
    print(f"[{name}] trained: {info}  loadavg {load()}", flush=True)
    orders = test_orders(data, args.orders)
    out: dict = {"train": info}
    t0 = time.perf_counter()
    explained = explain_orders(model, orders, steps=args.steps)
    out["explain_all_s"] = time.perf_counter() - t0
    out["faithfulness"] = faithfulness(model, orders, explained)
    out[f"residual_steps{args.steps}"] = residuals(explained)
    cheap = explain_orders(model, orders, steps=args.steps, max_tokens=0)
    out["faithfulness_max_tokens0"] = faithfulness(model, orders, cheap)
    out["residual_max_tokens0"] = residuals(cheap)
    print(f"[{name}] {out['faithfulness']['lines']} lines of {len(orders)} orders explained (steps {args.steps}) in "
          f"{out['explain_all_s']:.1f}s; top-vs-random rate {out['faithfulness']['rate']:.1%} "
          f"(where either moves: {out['faithfulness']['rate_where_either_moves']:.1%}); "
          f"max_tokens=0: {out['faithfulness_max_tokens0']['rate']:.1%}  loadavg {load()}", flush=True)
    few = orders[: max(1, len(orders) // 4)]
    out["residual_by_steps"] = {s: residuals(explain_orders(model, few, steps=s)) for s in (4, 8, 16, 32)}
    print(f"[{name}] residual/|p-p_base| by steps (words): "
          + "; ".join(f"{s}: median {r['median']:.1e} p90 {r['p90']:.1e} max {r['max']:.1e}"
                      for s, r in out["residual_by_steps"].items())
          + f"; max_tokens=0 at {args.steps}: median {out['residual_max_tokens0']['median']:.1e} "
            f"max {out['residual_max_tokens0']['max']:.1e}", flush=True)
    three = next((o for o in orders if len(o["lines"]) >= 3), orders[0])
    one = [{**three, "lines": three["lines"][:3]}]
    cost = {"score": p50_ms(lambda: model.score(one), args.repeats)}
    for s in (8, 16, 32):
        cost[f"explain_steps{s}"] = p50_ms(lambda: model.explain(one, steps=s), args.repeats)
    cost["explain_max_tokens0"] = p50_ms(lambda: model.explain(one, max_tokens=0), args.repeats)
    out["p50_ms_one_order_3_lines"] = cost
    out["loadavg"] = load()
    print(f"[{name}] p50 ms, one order of 3 lines ({args.repeats} repeats): "
          + ", ".join(f"{k} {v:.1f}" for k, v in cost.items()) + f"  loadavg {out['loadavg']}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["synthetic", "online-retail"], default=None)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--max-train-lines", type=int, default=100_000)
    ap.add_argument("--orders", type=int, default=24, help="test orders explained per log")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=32, help="IG steps of the faithfulness run (explain_orders' default)")
    ap.add_argument("--out", default="benchmarks/results/explain_faithfulness_risk.json")
    args = ap.parse_args()
    names = [args.only] if args.only else ["synthetic", "online-retail"]
    results = {name: run(name, args) for name in names}
    dest = Path(args.out)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps({"args": vars(args), "results": results}, indent=2, default=str))
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
