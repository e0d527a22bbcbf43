"""`ecomine demo`: the whole platform on the embedded synthetic log, end to end.

The outermost consumer of the flow: synthesise a log -> clean and profile it ->
train the recommender through Ray Train -> evaluate beside baselines ->
register -> run a tiny Ray Tune campaign -> write a summary JSON and PNG plots.
`DemoSize` fixes the numbers; tests run the same code path with `DemoSize.tiny()`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DemoSize", "run_demo"]


@dataclass
class DemoSize:
    users: int = 800
    items: int = 200
    days: int = 300
    epochs: int = 6
    tune_samples: int = 3
    tune_epochs: int = 2
    workers: int = 1
    seed: int = 0

    @classmethod
    def tiny(cls) -> DemoSize:
        return cls(users=150, items=50, days=90, epochs=2, tune_samples=2, tune_epochs=1)


@dataclass
class _Stage:
    name: str
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)


def _plot_history(history: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.plot(epochs, [h["train_loss"] for h in history], marker="o")
    a.set_xlabel("epoch")
    a.set_ylabel("train loss (full-softmax CE)")
    b.plot(epochs, [h.get("val_ndcg@10") for h in history], marker="o", label="all items")
    b.plot(epochs, [h.get("val_new_ndcg@10") for h in history], marker="o", label="new items")
    b.set_xlabel("epoch")
    b.set_ylabel("validation NDCG@10")
    b.legend()
    fig.suptitle("recommender training")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def run_demo(out_dir: str | Path = "demo_out", *, size: DemoSize | None = None, console=None) -> dict[str, Any]:
    """Run every stage, print progress, return (and write) the summary."""
    import ray
    import yaml
    from rich.console import Console

    from ecomine.data.cleaning import clean_frame
    from ecomine.datasets.synthetic import SynthParams, describe, generate, write
    from ecomine.registry import Registry
    from ecomine.specs import TrainSpec
    from ecomine.train.evaluate import MODEL_NAME, best_baseline
    from ecomine.train.metrics import format_report, report_json
    from ecomine.train.runner import run_training
    from ecomine.tuning import run_campaign

    size = size or DemoSize()
    console = console or Console()
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    registry = out / "registry"
    stages: list[_Stage] = []
    t_all = time.perf_counter()

    def stage(name: str):
        console.rule(f"[bold]{name}")
        return time.perf_counter()

    t = stage("1/5 synthetic event log")
    log = generate(SynthParams(users=size.users, items=size.items, days=size.days, seed=size.seed))
    write(log, str(out / "data"))
    facts = describe(log)
    console.print({k: v for k, v in facts.items() if not isinstance(v, dict)})
    stages.append(_Stage("synthetic log", time.perf_counter() - t, {k: v for k, v in facts.items() if not isinstance(v, dict)}))

    t = stage("2/5 clean and profile")
    _, report = clean_frame(log.events, name="synthetic")
    console.print(f"rows {report.rows_read:,} -> kept {report.rows_out:,}; dropped {report.dropped}; changed {report.changed}")
    stages.append(_Stage("clean", time.perf_counter() - t, {"rows_out": report.rows_out, "dropped": report.dropped}))

    if not ray.is_initialized():
        console.print("starting a local Ray ...")
        from ecomine.train.runner import ray_address

        address = ray_address(None)
        cpus = {"num_cpus": max(2, size.workers + 1)} if address == "local" else {}
        ray.init(address=address, log_to_driver=False, configure_logging=False, **cpus)
    data_ref = {"kind": "synthetic", "users": size.users, "items": size.items, "days": size.days, "seed": size.seed}
    t = stage("3/5 train the recommender (Ray Train)")
    spec = TrainSpec.model_validate({
        "data": data_ref,
        "model": {"preset": "recommend_small"},
        "optim": {"epochs": size.epochs, "batch_size": 64, "lr": 3e-3, "early_stopping": {"patience": 2}},
        "scaling": {"num_workers": size.workers, "cpus_per_worker": 1},
        "run": {"name": "demo-recommend", "storage": str(out / "runs"), "registry": str(registry), "tags": ["demo"]},
        "eval": {"ks": [5, 10, 20]},
    })
    outcome = run_training(spec, console=console)
    console.print(format_report(outcome.results, title="recommend: test split (full catalogue)"))
    Registry(str(registry)).promote("recommend", outcome.version, "production")
    ratios = {}
    for protocol in ("all_items", "new_items"):
        name, value = best_baseline(outcome.results, protocol)
        model = outcome.results[MODEL_NAME][protocol]["NDCG@10"]
        ratios[protocol] = {"model": model, "best_baseline": name, "baseline": value, "ratio": model / value if value else None}
    _plot_history(outcome.history, out / "training_curve.png")
    stages.append(_Stage("train", time.perf_counter() - t, {"version": outcome.version, "ratios": ratios}))

    t = stage("4/5 tuning campaign (Ray Tune, ASHA)")
    base = out / "tune" / "base.yaml"
    base.parent.mkdir(parents=True, exist_ok=True)
    base.write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    campaign = out / "tune" / "demo.yaml"
    campaign.write_text(yaml.safe_dump({
        "kind": "tune", "name": "demo-campaign", "base": "base.yaml",
        "overrides": {"optim.epochs": size.tune_epochs, "optim.early_stopping": None, "run.tags": ["demo"]},
        "space": {"optim.lr": "loguniform 1e-3 1e-2", "model.backbone.hidden": "choice [32, 64]"},
        "num_samples": size.tune_samples, "max_concurrent": 1, "storage": str(out / "tune_runs"), "export_top_k": 2,
        "seed": size.seed,
    }, sort_keys=False))
    camp = run_campaign(campaign, console=console)
    stages.append(_Stage("tune", time.perf_counter() - t, {"trials": camp.trials, "versions": camp.versions, "best": camp.best}))

    t = stage("5/5 registry")
    versions = Registry(str(registry)).list("recommend")
    for v in versions:
        console.print(f"  {v.version}  stages={v.stages or '-'}  tags={v.tags}")
    stages.append(_Stage("registry", time.perf_counter() - t, {"versions": [v.version for v in versions]}))

    summary = {
        "seconds": round(time.perf_counter() - t_all, 1),
        "size": asdict(size),
        "stages": [asdict(s) for s in stages],
        "recommend_report": report_json(outcome.results),
        "plots": {"training_curve": str(out / "training_curve.png"), "campaign": str(camp.plot_png)},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    console.rule("[bold green]done")
    console.print(f"summary: {out / 'summary.json'}; plots: {out / 'training_curve.png'}, {camp.plot_png}; "
                  f"{summary['seconds']:.0f}s in all")
    return summary
