"""The retraining loop on Online Retail, month after month: what the gate decides and what each run costs.

    python benchmarks/retrain_online_retail.py --months 2011-09-01 2011-10-01 2011-11-01 --epochs 3 \\
        --json benchmarks/results/retrain_online_retail.json

Each cut-off runs `ecomine.retrain.pipeline.run_pipeline` on the shared files (the packaged
`online-retail` DataSpec) with a window of `--window-days` before it: the first
month has no champion and is promoted; every later month trains a challenger
warm-started from the champion and gates it on the newest holdout (each user's
newest purchase before the cut-off). `--corrupt-last` replaces the last month's
purchases with a random permutation of their items (a data feed that broke), so the
gate must refuse it. Prints one row per month with the load average; the figures
go to --json. Needs ../shared (the Online Retail files); runs a local Ray.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import date
from pathlib import Path

import polars as pl
import yaml

REPO = Path(__file__).resolve().parents[1]


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "n/a"


def _corrupted_spec(work: Path, since: date) -> str:
    """A DataSpec over a copy of the cleaned log whose purchases from `since` on have shuffled items."""
    from ecomine.specs import SpecDataRef
    from ecomine.train.events import load_training_events

    events, _ = load_training_events(SpecDataRef(kind="spec", spec="online-retail"))
    late = (pl.col("ts") >= pl.lit(since).cast(pl.Datetime("us", "UTC"))) & (pl.col("event") == "purchase")
    shuffled = events.filter(late)["item_id"].shuffle(seed=1)
    bad = pl.concat([events.filter(~late), events.filter(late).with_columns(shuffled.alias("item_id"))]).sort("ts")
    path = work / "events_corrupt.parquet"
    bad.write_parquet(path)
    cols = {c: c for c in ("user_id", "item_id", "ts", "event", "quantity", "price", "order_id", "item_text")}
    spec = {"kind": "data", "name": "online-retail-corrupt", "sources": [{"uri": str(path), "columns": cols}]}
    out = work / "corrupt.yaml"
    out.write_text(yaml.safe_dump(spec))
    return str(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--months", nargs="+", default=["2011-09-01", "2011-10-01", "2011-11-01"])
    ap.add_argument("--window-days", type=int, default=365)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--corrupt-last", action="store_true", help="the last month's purchases get shuffled items")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from ecomine.retrain.pipeline import run_pipeline
    from ecomine.specs import PipelineSpec, TrainSpec, load_spec

    work = Path(tempfile.mkdtemp(prefix="ecomine-retrain-bench-"))
    base = load_spec(REPO / "benchmarks" / "recommend_online_retail.yaml", TrainSpec).model_dump(mode="json")
    base["optim"].update(epochs=args.epochs, early_stopping=None)
    base["run"].update(name=None, storage=str(work / "runs"), registry=str(work / "registry"))
    rows = []
    for i, until in enumerate(args.months):
        train = json.loads(json.dumps(base))
        corrupt = args.corrupt_last and i == len(args.months) - 1 and i > 0
        if corrupt:
            train["data"] = {"kind": "spec", "spec": _corrupted_spec(work, date.fromisoformat(args.months[i - 1]))}
        spec = PipelineSpec.model_validate({
            "name": "or-monthly", "task": "recommend", "train": train,
            "window": {"last_days": args.window_days, "until": until}, "gate": {"resamples": 1000},
        })
        load_before = _loadavg()
        t0 = time.perf_counter()
        record = run_pipeline(spec)
        seconds = time.perf_counter() - t0
        primary = (record.gate or {}).get("primary") or {}
        row = {
            "until": until, "corrupted": corrupt, "status": record.status, "champion": record.champion,
            "challenger": record.challenger, "seconds": round(seconds, 1), "load_before": load_before,
            "load_after": _loadavg(), "holdout_users": record.data.get("holdout_users"),
            "ndcg@10_champion": primary.get("champion"), "ndcg@10_challenger": primary.get("challenger"),
            "improvement": primary.get("improvement"), "ci": [primary.get("ci_low"), primary.get("ci_high")],
            "reason": (record.gate or {}).get("reason"), "warm_start": record.warm_start,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{'until':<12}{'status':<10}{'champion':>10}{'challenger':>12}{'improvement':>13}  interval            s    load")
    for r in rows:
        imp = f"{r['improvement']:+.2%}" if r["improvement"] is not None else "-"
        ci = f"[{r['ci'][0]:+.2%}, {r['ci'][1]:+.2%}]" if r["ci"][0] is not None else "-"
        c = f"{r['ndcg@10_champion']:.4f}" if r["ndcg@10_champion"] is not None else "-"
        h = f"{r['ndcg@10_challenger']:.4f}" if r["ndcg@10_challenger"] is not None else "-"
        print(f"{r['until'] + ('*' if r['corrupted'] else ''):<12}{r['status']:<10}{c:>10}{h:>12}{imp:>13}  {ci:<18}"
              f"{r['seconds']:>6.0f}  {r['load_after']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"argv": vars(args) | {"json": str(args.json)}, "cpus": os.cpu_count(),
                                         "rows": rows}, indent=2, default=str))


if __name__ == "__main__":
    main()
