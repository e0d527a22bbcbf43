"""`ecomine demo`: the whole platform end to end, on the embedded synthetic log (or Online Retail).

The outermost consumer of the flow: synthesise a log (or read the shared Online
Retail files) -> clean and profile it -> train the recommender, the demand
forecaster and the risk scorer through Ray Train -> evaluate each beside its
baselines -> register and promote them -> run a tiny Ray Tune campaign ->
build an ensemble of the trained model, the campaign's trials and the item-kNN
version (weights fitted on validation) and promote it -> deploy
serve_configs/local.yaml's app (every task; the ensemble as the recommend
champion, the single model in shadow; `ecomine.demo.serve`) with Ray Serve ->
call every route through the client SDK -> write a
summary JSON and PNG plots (training curves, a demand forecast band, a risk
reliability curve, the campaign) -> shut Serve down. The stages are `ecomine.demo.stages`.
`DemoSize` fixes the numbers; tests run the same code path with `DemoSize.tiny()`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ecomine.cluster.session import ensure_ray
from ecomine.demo.stages import STAGES, DemoRun, data_stage

__all__ = ["DemoSize", "run_demo"]


@dataclass
class DemoSize:
    """The numbers of one demo run; every stage runs the same code at any size."""

    users: int = 800
    items: int = 200
    days: int = 300
    epochs: int = 6
    tune_samples: int = 3
    tune_epochs: int = 2
    workers: int = 1
    seed: int = 0
    data: str = "synthetic"  # synthetic | online-retail (the shared files, through the packaged DataSpec)
    demand_epochs: int = 6
    # weekly: 200 items over 800 customers sell a few units a day, so a daily median is 0
    # almost everywhere; weekly sums are what an inventory planner of such a catalogue orders on
    demand_freq: str = "1w"
    demand_horizon: int = 4
    demand_context: int = 16
    demand_patch: int = 4
    demand_test_periods: int | None = None  # default: the task's (8 weeks)
    risk_epochs: int = 4
    risk_horizon_days: int = 30
    risk_test_days: int = 45
    risk_valid_days: int = 30
    risk_text: str = "item"  # item (titles: few unique texts, encoded once) | line (whole line + history: one text per line)
    risk_max_train_lines: int | None = None
    risk_split: dict[str, str] | None = None  # explicit dates (Online Retail: the temporal holdout)

    @classmethod
    def tiny(cls) -> DemoSize:
        return cls(
            users=150, items=50, days=90, epochs=2, tune_samples=1, tune_epochs=1,  # tune: one trial (test_tuning tests the campaign)
            demand_epochs=2, demand_freq="1d", demand_horizon=7, demand_context=28, demand_patch=7,
            demand_test_periods=14,
            risk_epochs=2, risk_horizon_days=10, risk_test_days=20, risk_valid_days=15,
        )

    @classmethod
    def online_retail(cls) -> DemoSize:
        """The shared Online Retail files: fewer epochs, titles-only risk text, the issue's split."""
        return cls(
            data="online-retail", epochs=2, tune_samples=2, tune_epochs=1, demand_epochs=3, risk_epochs=3,
            demand_freq="1d", demand_horizon=14, demand_context=56, demand_patch=7,
            risk_horizon_days=60, risk_max_train_lines=60_000,
            risk_split={"train_end": "2011-06-02", "label_cutoff": "2011-08-01",
                        "test_start": "2011-08-01", "test_end": "2011-10-10"},
        )

    def data_ref(self) -> dict[str, Any]:
        if self.data == "synthetic":
            return {"kind": "synthetic", "users": self.users, "items": self.items, "days": self.days, "seed": self.seed}
        return {"kind": "spec", "spec": self.data}


def run_demo(out_dir: str | Path = "demo_out", *, size: DemoSize | None = None, console=None) -> dict[str, Any]:
    """Run every stage (``demo.stages``) in order, print progress, return (and write) the summary."""
    import ray
    from rich.console import Console

    size = size or DemoSize()
    demo = DemoRun(Path(out_dir).resolve(), size, console or Console())
    demo.out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    n_stages = len(STAGES) + 2  # the data and cleaning first
    demo.console.rule(f"[bold]1/{n_stages} " + ("synthetic event log" if demo.synthetic else f"read {size.data}"))
    records = data_stage(demo)

    if not ray.is_initialized():
        demo.console.print("starting a local Ray ...")
    # Logical CPUs for what the demo schedules at once (Train workers + a Tune trial's
    # driver + Serve replicas); with exactly 2 a campaign was seen to stall on this box.
    demo.ray_is_ours = ensure_ray(local_cpus=max(4, size.workers + 3))
    for n, (title, stage) in enumerate(STAGES, start=3):
        demo.console.rule(f"[bold]{n}/{n_stages} {title}")
        records.append(stage(demo))

    summary = {
        "seconds": round(time.perf_counter() - t_all, 1),
        "size": asdict(size),
        "stages": [asdict(s) for s in records],
        "vs_baselines": demo.vs_baselines,
        "reports": demo.reports,
        "plots": {k: str(v) for k, v in demo.plots.items()},
    }
    (demo.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    _print_summary(demo.console, demo.vs_baselines, summary["seconds"], demo.out, demo.plots)
    if demo.ray_is_ours:
        ray.shutdown()  # Serve (its app was deleted) goes with it, before the next steps are printed
    _print_next_steps(demo.console, demo.registry, demo.history[-2:])
    return summary


def serve_command(registry: Path) -> str:
    """The command that serves the demo's versions with serve_configs/local.yaml (which reads ./registry)."""
    import shlex

    return f"ECOMINE_REGISTRY={shlex.quote(str(registry))} ecomine serve up serve_configs/local.yaml --blocking"


def _print_next_steps(console, registry: Path, history: list[str]) -> None:
    import json

    console.print("[bold]serve what the demo trained[/] (serve_configs/local.yaml reads ./registry by default):")
    console.print(f"  {serve_command(registry)}", soft_wrap=True, markup=False)
    console.print("[bold]then call it[/] (another terminal):", soft_wrap=True)
    for line in ("curl -s localhost:8000/v1/models",
                 "curl -s localhost:8000/v1/recommend -H 'content-type: application/json' "
                 f"-d '{json.dumps({'history': history, 'k': 5})}'",
                 "python -c \"from ecomine.client import EcomineClient; "
                 "print(EcomineClient(base_url='http://127.0.0.1:8000').models())\""):
        console.print(f"  {line}", soft_wrap=True, markup=False)


def _print_summary(console, vs: dict[str, Any], seconds: float, out: Path, plots: dict[str, Path]) -> None:
    from rich.table import Table

    table = Table(title="ecomine demo: each model beside its best baseline (test split)")
    for col in ("task", "metric", "model", "best baseline", "baseline", "model / baseline"):
        table.add_column(col, justify="left" if col in ("task", "metric", "best baseline") else "right")

    def fmt(v: Any) -> str:
        import math

        return f"{v:.4f}" if isinstance(v, (int, float)) and math.isfinite(v) else "-"

    for task, rows in vs.items():
        for key, r in rows.items():
            if isinstance(r, dict):
                label = r["metric"] + (f" ({key.replace('_', '-')})" if task.startswith("recommend") else "")
                table.add_row(task, label, fmt(r["model"]), str(r["best_baseline"]), fmt(r["baseline"]), fmt(r["ratio"]))
            else:
                table.add_row(task, key, fmt(r), "-", "-", "-")
    console.print(table)
    console.rule("[bold green]done")
    console.print(f"summary: {out / 'summary.json'}; plots: " + ", ".join(str(p) for p in plots.values())
                  + f"; {seconds:.0f}s in all")
