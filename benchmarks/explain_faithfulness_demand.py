"""Demand explanations (`DemandModel.explain`): which group drives each forecast, faithfulness, and cost.

For the synthetic log (daily, h=14) and Online Retail (top 500 stock codes,
weekly, h=4: `demand_online_retail.py`'s weekly setup), trains a small demand
forecaster in-process (the task's own batches and loss, a fixed number of AdamW
steps, no Ray: the figures are about the explanations, not the model), saves and
loads it as serving does, explains every network item at p50 and prints:

- the share of items whose top driver (largest |effect|) is each input group,
  and each group's mean |effect| (and mean |by_step|: a weekday pattern can
  move single steps a lot and the horizon mean little);
- top-vs-random: how often ablating the top driver alone (one group at its
  reference, the rest actual) moves p50 (mean over the horizon) more than
  ablating a random other group alone - a real test, since the top driver is
  ranked by its Shapley value, not by this ablation - and the same rate in
  expectation over all other groups;
- the largest |baseline + sum of effects - values| (exact Shapley: ~0);
- ms per call (median of --reps) of `forecast` vs `explain` for 1 and 50 items.

`--forecaster lightgbm` explains a LightGBM version instead (the same groups, ablated in its feature columns).

Usage: python benchmarks/explain_faithfulness_demand.py [--steps 300] [--reps 20] [--data synthetic online-retail]
       [--forecaster patchtst|lightgbm]
       [--json benchmarks/results/explain_faithfulness_demand.json]
Online Retail needs /work/shared/data/online_retail (the `online-retail` DataSpec preset).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

MODELS = {
    "synthetic": {
        "data": {"kind": "synthetic", "users": 2000, "items": 300, "days": 365, "seed": 0},
        "model": {"preset": "demand_small", "freq": "1d", "horizon": 14, "context_length": 56, "top_items": 300,
                  "min_history": 8, "eval": {"lightgbm": False, "test_periods": 28, "train_stride": 2}},
    },
    "online-retail": None,  # demand_online_retail.spec_for("1w"), built in main (it reads the data spec)
}


def spec_for(name: str, root: Path):
    from ecomine.specs import TrainSpec

    if name == "online-retail":
        import demand_online_retail as base

        return base.spec_for("1w", 1, root)
    return TrainSpec.model_validate({"task": "demand", **MODELS[name], "optim": {"epochs": 1, "batch_size": 256}})


def train(spec, data, steps: int, lr: float = 2e-3):
    from ecomine.train.demand_task import TASK

    torch.manual_seed(0)
    model = TASK.build_model(spec, data, None)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    rng = np.random.default_rng(0)
    n, bs = TASK.num_examples(data), spec.optim.batch_size
    for _ in range(steps):
        loss = model(**TASK.batch(data, rng.integers(0, n, bs), "cpu"))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def ms(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def with_forecaster(spec, forecaster: str):
    """The spec with `model.forecaster` set (lightgbm: the boosters, fitted on the driver, no steps)."""
    from ecomine.specs import TrainSpec

    raw = spec.model_dump(mode="json")
    return TrainSpec.model_validate({**raw, "model": {**raw["model"], "forecaster": forecaster}})


def measure(name: str, steps: int, reps: int, root: Path, forecaster: str = "patchtst") -> dict:
    from ecomine.models.demand import load_forecaster
    from ecomine.models.demand_explain import GROUPS, coalition_forecasts
    from ecomine.train.demand_task import TASK

    t0 = time.perf_counter()
    spec = with_forecaster(spec_for(name, root), forecaster)
    data = TASK.prepare(spec)
    t_prep = time.perf_counter() - t0
    if forecaster == "lightgbm":
        from ecomine.train.demand_task import fit_lightgbm

        model, steps = fit_lightgbm(spec, data), 0
    else:
        model = train(spec, data, steps)
    t_train = time.perf_counter() - t0 - t_prep
    folder = root / name
    folder.mkdir()
    TASK.save(folder, model, data, spec)
    fc = load_forecaster(folder)
    ids = [i for i, ok in zip(fc.items, fc.known_items(fc.items)) if ok]
    H = fc.max_horizon

    out = fc.explain(ids, H)
    values = np.array([o["values"] for o in out])
    forecast = fc.forecast(ids, H, [0.5])[:, 0, :]
    residual = max(abs(np.asarray(o["baseline"]) + np.sum([d["by_step"] for d in o["drivers"]], 0) - o["values"]).max()
                   for o in out)
    tops = Counter(o["drivers"][0]["input"] for o in out)
    size = {g: [abs(d["effect"]) for o in out for d in o["drivers"] if d["input"] == g] for g in GROUPS}
    step_size = {g: [np.abs(d["by_step"]).mean() for o in out for d in o["drivers"] if d["input"] == g] for g in GROUPS}

    _, v = coalition_forecasts(fc, ids, H, 0.5)
    full, S = v[:, -1], v.shape[1]
    alone = {g: np.abs((full - v[:, (S - 1) ^ (1 << j)]).mean(1)) for j, g in enumerate(GROUPS)}
    rng = np.random.default_rng(0)
    wins, expect = [], []
    for r, o in enumerate(out):
        top = o["drivers"][0]["input"]
        others = [g for g in GROUPS if g != top]
        wins.append(alone[top][r] > alone[rng.choice(others)][r])
        expect.append(np.mean([alone[top][r] > alone[g][r] for g in others]))

    timing = {}
    for k in (1, 50):
        few = ids[:k]
        timing[k] = {"forecast_ms": ms(lambda: fc.forecast(few, H, [0.5]), reps),
                     "explain_ms": ms(lambda: fc.explain(few, H), reps)}
    return {
        "data": name, "forecaster": forecaster, "freq": fc.freq, "horizon": H, "items_explained": len(ids), "fallback_items": len(fc.fallback_items),
        "train_steps": steps, "prepare_s": round(t_prep, 1), "train_s": round(t_train, 1),
        "values_equal_forecast": bool(np.array_equal(values, forecast)),
        "values_max_abs_diff": float(np.abs(values - forecast).max()),
        "additivity_max_residual": float(residual),
        "top_driver_share": {g: tops.get(g, 0) / len(out) for g in GROUPS},
        "mean_abs_effect": {g: float(np.mean(size[g])) for g in GROUPS},
        "mean_abs_by_step": {g: float(np.mean(step_size[g])) for g in GROUPS},
        "mean_p50": float(values.mean()),
        "top_vs_random": float(np.mean(wins)), "top_vs_others_expected": float(np.mean(expect)),
        "timing": timing, "torch_threads": torch.get_num_threads(), "loadavg": open("/proc/loadavg").read().strip(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=300, help="AdamW steps of training (batch 256)")
    ap.add_argument("--reps", type=int, default=20, help="timed calls per figure (median)")
    ap.add_argument("--data", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--forecaster", choices=["patchtst", "lightgbm"], default="patchtst",
                    help="the model explained: the network, or a LightGBM version (its feature columns ablated)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory(prefix="ecomine-explain-demand-") as tmp:
        for name in args.data:
            r = measure(name, args.steps, args.reps, Path(tmp), args.forecaster)
            rows.append(r)
            share = ", ".join(f"{g} {s:.0%}" for g, s in r["top_driver_share"].items())
            print(f"\n== {name}, {r['forecaster']} ({r['freq']}, h={r['horizon']}): {r['items_explained']} items explained "
                  f"({r['fallback_items']} fallback), {r['train_steps']} steps, prepare {r['prepare_s']} s, "
                  f"train {r['train_s']} s")
            print(f"top driver: {share}")
            print("mean |effect| (units, horizon mean) / mean |by_step|: " + ", ".join(
                f"{g} {r['mean_abs_effect'][g]:.3g} / {r['mean_abs_by_step'][g]:.3g}" for g in r["mean_abs_effect"])
                + f"; mean p50 {r['mean_p50']:.3g}")
            print(f"top vs random other group (ablated alone): {r['top_vs_random']:.1%} "
                  f"(expected over all others {r['top_vs_others_expected']:.1%})")
            print(f"values == forecast: {r['values_equal_forecast']} (max |diff| {r['values_max_abs_diff']:.2g}); "
                  f"additivity residual {r['additivity_max_residual']:.2g}")
            for k, t in r["timing"].items():
                print(f"{k:>3} items: forecast {t['forecast_ms']:.2f} ms, explain {t['explain_ms']:.2f} ms "
                      f"({t['explain_ms'] / t['forecast_ms']:.1f}x)")
            print(f"load {r['loadavg']} on {os.cpu_count()} cores, torch threads {r['torch_threads']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        cmd = "python benchmarks/explain_faithfulness_demand.py " + " ".join(argv if argv is not None else sys.argv[1:])
        args.json.write_text(json.dumps({"runs": rows, "command": cmd}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
