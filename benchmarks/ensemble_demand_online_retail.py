"""A demand ensemble against its best member: Online Retail (top 500 stock codes, weekly, h=4) and a synthetic daily log.

For each data shape, trains `--members` PatchTST demand versions through the shared path
(`run_training`: Ray Train, best checkpoint, registry in a temporary folder) that differ where
demand members may differ - seed, size preset (`demand_small` / `demand_base`), learning rate -
plus, unless `--no-lightgbm`, one LightGBM version (`model.forecaster: lightgbm`, the same
`run_training` call: fitted on the driver on the same training windows, registered with the same
report), all forecasting alike (same frequency, horizon, quantiles, context). Then
`ecomine ensemble build`s them (`build_ensemble`: weights on the simplex minimising validation
scaled pinball, quantiles re-sorted) and prints the test report: each member's and the ensemble's
scaled pinball and the ensemble / best-member ratio (issue 12's target: <= 0.97).

Shapes: `online-retail` is `demand_online_retail.py`'s weekly setup; `synthetic` is the seeded
synthetic log (2,000 users, 300 items, 365 days), daily, h=14, context 56. `--valid-origins`
sets `model.eval.valid_origins` (the origins the weights are fitted on; each one more moves the
training cut one origin step earlier).

Usage: python benchmarks/ensemble_demand_online_retail.py [--epochs 10] [--members 2]
       [--shapes online-retail synthetic] [--valid-origins 8] [--no-lightgbm]
       [--json benchmarks/results/ensemble_demand_online_retail.json]
Needs /work/shared/data/online_retail (the `online-retail` DataSpec preset) for that shape.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# (seed, preset, lr): members that differ in what an ensemble can use
VARIANTS = [(0, "demand_small", 2e-3), (1, "demand_base", 1e-3), (2, "demand_small", 4e-3), (3, "demand_base", 2e-3)]
SYNTHETIC = {
    "data": {"kind": "synthetic", "users": 2000, "items": 300, "days": 365, "seed": 0},
    "model": {"preset": "demand_small", "freq": "1d", "horizon": 14, "context_length": 56, "patch_length": 7,
              "patch_stride": 7, "top_items": 300, "min_history": 8,
              "eval": {"test_periods": 56, "origin_every": 7, "valid_origins": 2, "train_stride": 2,
                       "lightgbm_rounds": 200, "lightgbm_max_rows": 200_000}},
}


def base_spec(shape: str, epochs: int, root: Path, valid_origins: int):
    """The shape's PatchTST TrainSpec as a dict (members are variations of it)."""
    import demand_online_retail as base
    from ecomine.specs import TrainSpec

    if shape == "online-retail":
        raw = base.spec_for("1w", epochs, root).model_dump(mode="json")
    else:
        raw = TrainSpec.model_validate({
            "task": "demand", **SYNTHETIC,
            "optim": {"epochs": epochs, "batch_size": 256, "lr": 2e-3, "early_stopping": {"metric": "pinball", "patience": 3}},
            "scaling": {"num_workers": 1, "cpus_per_worker": 1},
            "run": {"storage": str(root / "runs"), "registry": str(root / "registry")},
        }).model_dump(mode="json")
    raw["model"]["eval"]["valid_origins"] = valid_origins
    return raw


def run_shape(shape: str, args, console) -> dict:
    from ecomine.specs import TrainSpec
    from ecomine.train.runner import run_training

    from ensemble_bench import ensemble_versus_best, train_member

    rows, t_all = [], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ecomine-demand-ensemble-") as tmp:
        root = Path(tmp)
        raw0 = base_spec(shape, args.epochs, root, args.valid_origins)
        variants = [("patchtst", s, p, lr) for s, p, lr in VARIANTS[: args.members]]
        if args.lightgbm:
            variants.append(("lightgbm", 0, None, None))
        for kind, seed, preset, lr in variants:
            raw = json.loads(json.dumps(raw0))
            if kind == "lightgbm":
                raw["model"]["forecaster"] = "lightgbm"
                raw["model"]["lightgbm"] = {"rounds": 300, "threads": 1}
            else:
                raw["model"]["preset"] = preset
                raw["optim"].update(seed=seed, lr=lr)
            raw["run"]["name"] = f"demand-{shape}-{kind}-{seed}"
            rows.append({"forecaster": kind, "seed": seed, "preset": preset, "lr": lr})
            spec = TrainSpec.model_validate(raw)
            train_member(shape, f"{kind}, seed {seed}, {preset}, lr {lr}", rows[-1],
                         lambda: run_training(spec, console=None), console)
        summary, out = ensemble_versus_best("demand", shape, root / "registry", rows, console, t_all)
        summary["member_test_pinball"] = {k: v["pinball"] for k, v in out.results.items() if k.startswith("member ")}
        summary["ensemble_test_pinball"] = out.results["ensemble"]["pinball"]
        return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--members", type=int, default=2, choices=range(1, len(VARIANTS) + 1),
                    help="PatchTST members (the LightGBM one comes on top)")
    ap.add_argument("--valid-origins", type=int, default=8,
                    help="members' model.eval.valid_origins, the origins the weights are fitted on (their own default: 2)")

    from ensemble_bench import parse_args, run_shapes

    args = parse_args(ap, argv, ["online-retail", "synthetic"])
    return run_shapes("ensemble_demand_online_retail.py", args, argv, run_shape)


if __name__ == "__main__":
    sys.exit(main())
