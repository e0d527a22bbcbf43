"""A risk ensemble against its best member: Online Retail returns and a synthetic log.

For each data shape, trains risk versions through the shared path (`run_training`: Ray Train
for the text-encoder members, the driver for LightGBM; best checkpoint; registry in a temporary
folder) that differ where risk members may differ - the frozen text encoder + MLP head at two
head shapes / seeds / learning rates, and one LightGBM booster over the same numeric features
(`model.classifier: lightgbm`) - all on one split and label. Then `ecomine ensemble build`s them
(`build_ensemble`: mixture weights on the simplex maximising the validation likelihood of the
members' calibrated probabilities, one Platt recalibration) and prints the test report: each
member's and the ensemble's PR-AUC and the ensemble / best-member ratio (issue 12's target:
PR-AUC >= 1.02x).

Shapes: `online-retail` is `risk_online_retail.py`'s setup (item returns within 60 days, train
before 2011-06-02, test 2011-08-01 .. 2011-10-09); `synthetic` is the seeded synthetic log
(3,000 users, 400 items, 365 days; order cancellations within 30 days, line text).

Usage: python benchmarks/ensemble_risk_online_retail.py [--epochs 5] [--shapes online-retail synthetic]
       [--no-lightgbm] [--json benchmarks/results/ensemble_risk_online_retail.json]
Needs /work/shared/data/online_retail (the `online-retail` DataSpec preset) for that shape.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from risk_online_retail import ONLINE_RETAIL_RISK  # noqa: E402 (the benchmarks folder is on the path just above)

# (seed, head hidden sizes, dropout, lr): encoder members that differ in what an ensemble can use
VARIANTS = [(0, [256, 64], 0.3, 1e-3), (1, [128], 0.1, 2e-3)]
SHAPES = {
    "online-retail": ONLINE_RETAIL_RISK,
    "synthetic": {
        "data": {"kind": "synthetic", "users": 3000, "items": 400, "days": 365, "seed": 0},
        "model": {"text": "line", "max_length": 64, "horizon_days": 30, "split": {"test_days": 60, "valid_days": 30}},
    },
}


def member_spec(shape: str, kind: str, variant, epochs: int, root: Path):
    from ecomine.specs import TrainSpec

    base = SHAPES[shape]
    model = {**base["model"], "calibration": "temperature", "threshold": {"cost_ratio": 20}}
    optim = {"epochs": epochs, "batch_size": 1024, "weight_decay": 0.05,
             "early_stopping": {"metric": "pr_auc", "patience": 2}}
    if kind == "lightgbm":
        model.update(classifier="lightgbm", lightgbm={"threads": 1})
        optim["seed"] = 0
        name = f"risk-{shape}-lightgbm"
    else:
        seed, hidden, dropout, lr = variant
        model.update(mode="frozen", hidden=hidden, dropout=dropout, numeric_features=True)
        optim.update(seed=seed, lr=lr)
        name = f"risk-{shape}-encoder-{seed}"
    return TrainSpec.model_validate({
        "task": "risk", "data": base["data"], "model": model, "optim": optim,
        "scaling": {"num_workers": 1, "cpus_per_worker": 1},
        "run": {"name": name, "storage": str(root / "runs"), "registry": str(root / "registry")},
    })


def run_shape(shape: str, args, console) -> dict:
    from ecomine.train.risk_task import TASK
    from ecomine.train.runner import run_training

    from ensemble_bench import ensemble_versus_best, train_member

    rows, t_all = [], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ecomine-risk-ensemble-") as tmp:
        root = Path(tmp)
        plan = [("encoder", v) for v in VARIANTS[: args.members]] + ([("lightgbm", None)] if args.lightgbm else [])
        data = None
        for kind, variant in plan:
            spec = member_spec(shape, kind, variant, args.epochs, root)
            if data is None:
                data = TASK.prepare(spec)  # one split and label for all: prepared once, adapted per member
            rows.append({"classifier": kind, "variant": variant})
            train_member(shape, f"{kind} {variant or ''}", rows[-1],
                         lambda: run_training(spec, data=TASK.adapt(data, spec), console=None), console)
        summary, _ = ensemble_versus_best("risk", shape, root / "registry", rows, console, t_all, data=data)
        summary["sizes"] = {s: {"lines": len(getattr(data, s)), "positives": int(getattr(data, s).labels.sum())}
                            for s in ("train", "valid", "test")}
        return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--members", type=int, default=2, choices=range(0, len(VARIANTS) + 1),
                    help="text-encoder members (the LightGBM one comes on top)")
    from ensemble_bench import parse_args, run_shapes

    args = parse_args(ap, argv, list(SHAPES))
    return run_shapes("ensemble_risk_online_retail.py", args, argv, run_shape)


if __name__ == "__main__":
    sys.exit(main())
