"""What the ensemble benchmarks share: train members one at a time, build their ensemble, print it against the best member.

Used by `ensemble_demand_online_retail.py` and `ensemble_risk_online_retail.py`, which say
which members to train on which data; this module times each member, calls
`ecomine.ensemble.build.build_ensemble` on them (the `ecomine ensemble build` path), prints the
test report and the ensemble / best-member ratio with the load average, and writes the JSON.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

__all__ = ["loadavg", "parse_args", "train_member", "ensemble_versus_best", "run_shapes"]


def loadavg() -> list[str]:
    return open("/proc/loadavg").read().split()[:3]


def parse_args(ap, argv: list[str] | None, shapes: list[str]):
    """`ap` (the script's own --epochs / --members ...) plus what both share: --shapes, --no-lightgbm, --json;
    refuses fewer than two members."""
    ap.add_argument("--shapes", nargs="+", default=list(shapes), choices=list(shapes))
    ap.add_argument("--no-lightgbm", dest="lightgbm", action="store_false", help="no LightGBM member")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.members + args.lightgbm < 2:
        ap.error("an ensemble needs at least 2 members")
    return args


def train_member(shape: str, what: str, row: dict[str, Any], train: Callable[[], Any], console) -> str:
    """Run `train()` (a TrainOutcome), record version, seconds, best epoch and load in `row`; the version."""
    t0 = time.perf_counter()
    outcome = train()
    row.update(version=outcome.version, seconds=round(time.perf_counter() - t0, 1), best_epoch=outcome.best_epoch,
               loadavg=loadavg())
    console.print(f"{shape} member {outcome.version}: {what}, best epoch {outcome.best_epoch}, "
                  f"{row['seconds']:.0f} s (load {row['loadavg']})")
    return outcome.version


def ensemble_versus_best(task: str, shape: str, registry: Path, rows: list[dict[str, Any]], console,
                         t_all: float, data: Any = None) -> tuple[dict[str, Any], Any]:
    """Build the ensemble of `rows`' versions (on `data` when the caller prepared it); (summary, EnsembleOutcome)."""
    from ecomine.ensemble.build import build_ensemble, versus_best_member
    from ecomine.specs import EnsembleSpec
    from ecomine.train.reports import report_json

    spec = EnsembleSpec(task=task, registry=str(registry), members=[{"version": r["version"]} for r in rows])
    t0 = time.perf_counter()
    out = build_ensemble(spec, console=console, data=data)
    console.print(out.report)
    versus = versus_best_member(task, out.results)
    load = loadavg()
    for v in versus:
        console.print(f"{shape} {v['metric']}: ensemble {v['ensemble']:.4f} vs best member {v['member']:.4f} "
                      f"({v['best_member']}): {v['ratio']:.3f}x ({v['better']} is better); "
                      f"fit + test {time.perf_counter() - t0:.0f} s; total {time.perf_counter() - t_all:.0f} s; "
                      f"load {load} on {os.cpu_count()} cores")
    for row, pin in zip(rows, out.members):
        row["weight"] = pin["weight"]
    summary = {"members": rows, "weights": [m["weight"] for m in out.members], "versus_best_member": versus,
               "results": report_json(out.results), "seconds": round(time.perf_counter() - t_all, 1),
               "loadavg_end": load}
    return summary, out


def run_shapes(script: str, args, argv: list[str] | None, run_shape: Callable[[str, Any, Any], dict]) -> int:
    """`run_shape` over `args.shapes`, one summary JSON (`args.json`) with the machine and the command."""
    from rich.console import Console

    console = Console(width=160)
    t0 = time.perf_counter()
    summary: dict[str, Any] = {shape: run_shape(shape, args, console) for shape in args.shapes}
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    summary["machine"] = f"{os.cpu_count()} cores"
    summary["command"] = f"python benchmarks/{script} " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2, default=float))
    return 0
