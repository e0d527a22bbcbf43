"""Demand forecaster vs baselines on Online Retail: top 500 stock codes, daily (h=14) and weekly (h=4).

Trains each frequency through the shared path (`run_training`: local Ray, Ray
Train, best checkpoint, `TASK.evaluate`, registry in a temporary folder) and
prints one table per frequency with every model and baseline - WAPE, MASE,
bias, mean scaled pinball, scaled pinball per quantile, p10-p90 coverage - and
the ratios transformer / LightGBM. Test: rolling origins every 7 days (weekly:
every week) over the last 8 weeks, each forecasting from the actual history up
to the origin without refit. Weekly series end with the last complete ISO week
(Sunday 2011-12-04): the data stop on Friday 2011-12-09.

Usage: python benchmarks/demand_online_retail.py [--epochs 10] [--freq 1d 1w] [--out benchmarks/results]
Needs /work/shared/data/online_retail (the `online-retail` DataSpec preset).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from rich.console import Console

from ecomine.specs import TrainSpec
from ecomine.train.demand_eval import MODEL_NAME, format_report
from ecomine.train.reports import report_json

SETUPS = {
    # daily: 16 weekly patches of context; training windows every 2nd day keep an epoch ~15 s on 2 cores
    "1d": {"freq": "1d", "horizon": 14, "context_length": 112, "patch_length": 7, "patch_stride": 7,
           "eval": {"test_periods": 56, "origin_every": 7, "valid_origins": 2, "train_stride": 2,
                    "lightgbm_rounds": 200, "lightgbm_max_rows": 200_000}},
    "1w": {"freq": "1w", "horizon": 4, "context_length": 24, "patch_length": 4, "patch_stride": 4,
           "eval": {"test_periods": 8, "origin_every": 1, "valid_origins": 2, "train_stride": 1,
                    "lightgbm_rounds": 200, "lightgbm_max_rows": 200_000}},
}


def spec_for(freq: str, epochs: int, root: Path) -> TrainSpec:
    return TrainSpec.model_validate({
        "task": "demand",
        "data": {"kind": "spec", "spec": "online-retail"},
        "model": {"preset": "demand_small", "top_items": 500, "min_history": 8, **SETUPS[freq]},
        "optim": {"epochs": epochs, "batch_size": 256, "lr": 2e-3, "early_stopping": {"metric": "pinball", "patience": 3}},
        "scaling": {"num_workers": 1, "cpus_per_worker": 1},
        "run": {"name": f"demand-or-{freq}", "storage": str(root / "runs"), "registry": str(root / "registry")},
    })


def ratios(results: dict) -> dict:
    model, lgb = results[MODEL_NAME], results.get("lightgbm")
    if lgb is None:
        return {}
    return {k: model[k] / lgb[k] for k in ("wape", "mase", "pinball") if model.get(k) and lgb.get(k)}


def markdown(summary: dict) -> str:
    """The results as Markdown tables (one per frequency)."""

    def f(v) -> str:
        return "-" if v is None else f"{v:.3f}"

    md = ["# Demand forecaster on Online Retail (top 500 stock codes)", ""]
    for freq, block in summary.items():
        qs = [k[len("pinball_"):] for k in block["results"][MODEL_NAME] if k.startswith("pinball_p")]
        md += [f"## {block['title']}", "",
               "| model | WAPE | MASE | bias | scaled pinball | " + " | ".join(qs) + " | coverage | below low | above high |",
               "|---" * (8 + len(qs)) + "|"]
        for name, v in block["results"].items():
            cells = [v["wape"], v["mase"], v["bias"], v["pinball"], *[v[f"pinball_{q}"] for q in qs],
                     v.get("coverage"), v.get("below_low"), v.get("above_high")]
            md.append(f"| {name} | " + " | ".join(f(c) for c in cells) + " |")
        r = ", ".join(f"{k} {v:.3f}" for k, v in block["ratio_to_lightgbm"].items())
        md += ["", f"transformer / LightGBM: {r}; best epoch {block['best_epoch']}; {block['seconds']:.0f} s", ""]
    return "\n".join(md)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--freq", nargs="+", default=["1d", "1w"], choices=list(SETUPS))
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    from ecomine.train.runner import run_training

    console = Console(width=160)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {}
    with tempfile.TemporaryDirectory(prefix="ecomine-demand-bench-") as tmp:
        for freq in args.freq:
            spec = spec_for(freq, args.epochs, Path(tmp))
            t0 = time.perf_counter()
            outcome = run_training(spec, console=console)
            seconds = time.perf_counter() - t0
            res = report_json(outcome.results)
            r = ratios(outcome.results)
            m = res[MODEL_NAME]
            title = (f"Online Retail, {freq}, h={spec.model.horizon}: {m['n_items']} items "
                     f"({m['n_fallback']} fallback), {m['n_origins']} origins")
            console.print(format_report(outcome.results, title=title))
            line = ", ".join(f"{k} {v:.3f}" for k, v in r.items())
            console.print(f"{freq}: transformer / LightGBM: {line}; coverage {m['coverage']:.3f}; "
                          f"best epoch {outcome.best_epoch}; {seconds:.0f}s")
            summary[freq] = {"results": res, "ratio_to_lightgbm": r, "best_epoch": outcome.best_epoch,
                             "seconds": seconds, "history": outcome.history,
                             "spec": spec.model_dump(mode="json"), "title": title}
    (out / "demand_online_retail.json").write_text(json.dumps(summary, indent=2, default=float))
    (out / "demand_online_retail.md").write_text(markdown(summary))
    console.print(f"wrote {out / 'demand_online_retail.json'} and .md")


if __name__ == "__main__":
    main()
