"""Demand at its shipped defaults on four shapes: interval calibration before/after, beside LightGBM.

One command, four data sets, each at its own frequency's defaults and no per-data tuning:

- `synthetic`: the embedded synthetic log, daily, `train_configs/demand.yaml` as shipped;
- `or-daily`, `or-weekly`: Online Retail (top 500 stock codes), the setups of
  `benchmarks/demand_online_retail.py` (needs ../shared/data/online_retail);
- `weekly-retail`: a log generated here, of a shape none of the others has - three years
  of weekly sales, yearly seasons peaking in different weeks per item, Christmas and
  Black Friday spikes, a third of the items intermittent (mostly zero weeks), and price
  promotions that move demand through a per-item elasticity. Seeded; written to a
  temporary folder and read through a DataSpec like any user's parquet.

Each run trains through the shared path (`run_training`: local Ray, Ray Train, best
checkpoint, `TASK.evaluate`) and prints, per data set, the model with its conformal
intervals, the same model before calibration (`*_uncalibrated`), and the LightGBM
baseline of the same report: WAPE, scaled pinball, p10-p90 coverage, the shares below
p10 and above p90, and the model / LightGBM ratios. Figures, never asserted.

`--compare-seeds` also fits, on the same trained members, the mixture of the first PatchTST
seed and LightGBM alone (`build_ensemble`, the path of `ecomine ensemble build`), so what the
seed average (`model.seeds`, 3 in train_configs/demand.yaml) adds is measured in one run.

Usage: python benchmarks/demand_shapes.py [--only synthetic or-daily or-weekly weekly-retail] [--set optim.lr=1e-3]
       [--compare-seeds] [--tag NAME] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from demand_online_retail import SETUPS  # noqa: E402

SHAPES = ("synthetic", "or-daily", "or-weekly", "weekly-retail")
# the weekly setup of the Online Retail benchmark, with a year of context: yearly seasons need one
WEEKLY_RETAIL = {**SETUPS["1w"], "context_length": 52, "patch_length": 4, "patch_stride": 4}


def weekly_retail_log(folder: Path, *, items: int = 300, weeks: int = 156, seed: int = 0) -> Path:
    """Write the generated weekly log as parquet and a DataSpec YAML over it; returns the YAML's path."""
    rng = np.random.default_rng(seed)
    start = dt.date(2021, 1, 4)  # a Monday
    week = np.arange(weeks)
    dates = [start + dt.timedelta(weeks=int(w)) for w in week]
    intermittent = rng.random(items) < 1 / 3
    base = np.where(intermittent, rng.uniform(0.1, 0.6, items), rng.lognormal(np.log(8.0), 1.0, items))
    amp, peak = rng.uniform(0.1, 0.6, items), rng.uniform(0, 52.18, items)
    season = 1 + amp[:, None] * np.cos(2 * np.pi * (week[None, :] - peak[:, None]) / 52.18)
    xmas = np.array([d.month == 12 and 8 <= d.day <= 24 for d in dates])
    black_friday = np.array([d.month == 11 and 20 <= d.day <= 26 for d in dates])
    lift = np.where(rng.random(items) < 0.5, rng.uniform(0.0, 2.0, items), 0.0)
    holiday = 1 + lift[:, None] * xmas[None, :] + 0.5 * black_friday[None, :]
    trend = np.exp(rng.normal(0, 0.1, items)[:, None] * week[None, :] / 52.0)
    price0 = rng.lognormal(np.log(10.0), 0.5, items)
    promo = np.zeros((items, weeks), bool)
    for i in range(items):  # a promotion starts in ~6 % of weeks and lasts 1-2 weeks
        for s in np.flatnonzero(rng.random(weeks) < 0.06):
            promo[i, s : s + rng.integers(1, 3)] = True
    discount = rng.uniform(0.2, 0.3, items)[:, None]
    price = price0[:, None] * np.where(promo, 1 - discount, 1.0)
    elasticity = rng.uniform(1.0, 3.0, items)[:, None]
    mean = base[:, None] * season * holiday * trend * (price / price0[:, None]) ** (-elasticity)
    units = rng.poisson(rng.gamma(3.0, mean / 3.0))  # negative binomial: over-dispersed counts
    i_idx, w_idx = np.nonzero(units)
    n = len(i_idx)
    ts = [dt.datetime.combine(dates[w], dt.time(10)) + dt.timedelta(days=int(d), hours=int(h))
          for w, d, h in zip(w_idx, rng.integers(0, 7, n), rng.integers(0, 9, n))]
    frame = pl.DataFrame({
        "customer": [f"c{c}" for c in rng.integers(0, 5000, n)], "sku": [f"SKU{i:04d}" for i in i_idx],
        "ts": ts, "units": units[i_idx, w_idx].astype(np.int64), "unit_price": np.round(price[i_idx, w_idx], 2),
        "order": [f"o{k}" for k in range(n)],
    })
    frame.write_parquet(folder / "weekly_retail.parquet")
    spec = {"kind": "data", "name": "weekly_retail", "default_event": "purchase",
            "sources": [{"uri": str(folder / "weekly_retail.parquet"), "format": "parquet",
                         "columns": {"user_id": "customer", "item_id": "sku", "ts": "ts", "quantity": "units",
                                     "price": "unit_price", "order_id": "order"}}]}
    path = folder / "weekly_retail.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def spec_for(shape: str, tmp: Path, overrides: dict | None = None):
    """The shipped demand defaults, pointed at `shape` (a frequency's setup where the shape asks for one),
    then `overrides` (dotted keys, as `ecomine train --set` takes them) on every shape alike."""
    from ecomine.specs import TrainSpec, load_spec

    run = {"storage": str(tmp / "runs"), "registry": str(tmp / "registry"), "name": f"demand-{shape}"}
    if shape == "synthetic":
        return load_spec(ROOT / "train_configs" / "demand.yaml", TrainSpec, overrides={"run": run, **(overrides or {})})
    setup = {"or-daily": SETUPS["1d"], "or-weekly": SETUPS["1w"], "weekly-retail": WEEKLY_RETAIL}[shape]
    data = ("online-retail" if shape.startswith("or-") else str(weekly_retail_log(tmp)))
    return load_spec(ROOT / "train_configs" / "demand.yaml", TrainSpec, overrides={
        "data": {"kind": "spec", "spec": data}, "run": run,
        **{f"model.{k}": v for k, v in setup.items() if k != "eval"},
        **{f"model.eval.{k}": v for k, v in setup["eval"].items()},
        **(overrides or {}),
    })


def _one_seed_mixture(spec, version) -> dict:
    """The test report of the mixture of the ensemble's first PatchTST seed and its LightGBM member alone."""
    from ecomine.ensemble.build import build_ensemble
    from ecomine.specs import EnsembleSpec
    from ecomine.train.reports import report_json

    refs = version.spec["members"]
    seeds = [r["version"] for r in refs if r.get("group")]
    single = [r["version"] for r in refs if not r.get("group")]
    if not seeds or len(single) != 1:
        raise SystemExit(f"--compare-seeds: {version.version} is not a seeds ensemble (model.seeds > 1)")
    out = build_ensemble(EnsembleSpec(task="demand", registry=spec.run.registry,
                                      members=[{"version": seeds[0]}, {"version": single[0]}]))
    return report_json(out.results)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="+", default=list(SHAPES), choices=SHAPES)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a spec field on every shape (YAML value), e.g. --set optim.lr=1e-3")
    ap.add_argument("--tag", default="", help="suffix of the results file")
    ap.add_argument("--compare-seeds", action="store_true",
                    help="also fit the first PatchTST seed + LightGBM mixture on the same members")
    args = ap.parse_args()
    from ecomine.specs import parse_overrides

    overrides = parse_overrides(args.overrides)
    from rich.console import Console

    from ecomine.train.demand_eval import format_report
    from ecomine.train.demand_task import UNCALIBRATED, model_name
    from ecomine.train.reports import report_json
    from ecomine.ensemble.trained import train_version
    from ecomine.registry import Registry

    console = Console(width=180)
    summary: dict = {}
    keys = ("wape", "pinball", "coverage", "coverage_open", "below_low", "above_high")
    for shape in args.only:
        with tempfile.TemporaryDirectory(prefix="ecomine-demand-shapes-") as tmp:
            spec = spec_for(shape, Path(tmp), overrides)
            load = os.getloadavg()
            t0 = time.perf_counter()
            outcome = train_version(spec, console=console)
            seconds = time.perf_counter() - t0
            version = Registry(spec.run.registry).get("demand", outcome.version)
            fit = version.metrics.get("fit")  # an ensemble's weights
            one_seed = _one_seed_mixture(spec, version) if args.compare_seeds and fit else None
        res = report_json(outcome.results)
        name = model_name(spec)  # the model's row; `<name>_uncalibrated` only with model.intervals: conformal
        rows = {k: {m: res[k].get(m) for m in keys} for k in res
                if k in (name, name + UNCALIBRATED, "lightgbm") or k.startswith("member ")}
        ratio = {m: res[name][m] / res["lightgbm"][m] for m in ("wape", "pinball") if "lightgbm" in res}
        console.print(format_report(outcome.results, title=f"{shape}: {spec.model.freq}, h={spec.model.horizon}, "
                                                           f"context {spec.model.context_length}"))
        if fit:
            console.print(f"{shape}: ensemble weights {[round(w, 3) for w in fit.get('fitted_weights', [])]} fitted, "
                          f"shrink {fit.get('shrink')}, fitted without each origin {fit.get('held_out_weights')}")
        console.print(f"{shape}: model / LightGBM " + ", ".join(f"{k} {v:.3f}" for k, v in ratio.items())
                      + f"; coverage {rows[name]['coverage']:.3f} (open {rows[name]['coverage_open']:.3f})"
                      + (f" (uncalibrated {rows[name + UNCALIBRATED]['coverage']:.3f})" if name + UNCALIBRATED in rows else "")
                      + f"; best epoch {outcome.best_epoch}; {seconds:.0f} s; load {load[0]:.2f}")
        ratio_1 = None
        if one_seed is not None:
            rows["mixture_1_seed"] = {m: one_seed["ensemble"].get(m) for m in keys}
            ratio_1 = {m: one_seed["ensemble"][m] / one_seed["lightgbm"][m] for m in ("wape", "pinball")}
            console.print(f"{shape}: {spec.model.seeds} seeds vs 1 on the same members, model / LightGBM: "
                          + ", ".join(f"{k} {ratio[k]:.3f} vs {ratio_1[k]:.3f}" for k in ratio)
                          + f"; coverage {rows[name]['coverage']:.3f} vs {rows['mixture_1_seed']['coverage']:.3f}")
        summary[shape] = {"rows": rows, "ratio_to_lightgbm": ratio, "ratio_1_seed_to_lightgbm": ratio_1,
                          "best_epoch": outcome.best_epoch,
                          "seconds": seconds, "loadavg_before": load, "loadavg_after": os.getloadavg(),
                          "history": outcome.history, "spec": spec.model_dump(mode="json"), "fit": fit}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "demand_shapes" + ("" if args.only == list(SHAPES) else "_" + "_".join(args.only)) + (f"_{args.tag}" if args.tag else "")
    path = out / f"{name}.json"
    path.write_text(json.dumps(summary, indent=2, default=float))
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
