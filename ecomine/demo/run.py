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
reliability curve, the campaign) -> shut Serve down.
`DemoSize` fixes the numbers; tests run the same code path with `DemoSize.tiny()`.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ecomine.cluster.session import ensure_ray
from ecomine.demo.plots import plot_forecast, plot_history
from ecomine.registry import Registry
from ecomine.specs import DataSpec, EnsembleSpec, TrainSpec, load_spec, metric_mode

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
            users=150, items=50, days=90, epochs=2, tune_samples=2, tune_epochs=1,
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


@dataclass
class _Stage:
    name: str
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)


def _train_and_promote(spec, reg, console, title: str):
    """One task through Ray Train; its report beside the baselines; the version promoted to production."""
    from ecomine.ensemble.trained import train_version
    from ecomine.train.tasks import get_task

    outcome = train_version(spec, console=console)
    console.print(get_task(spec.task).format_report(outcome.results, title=title))
    reg.promote(spec.task, outcome.version, "production")
    return outcome


def _best(results: dict[str, Any], model: str, metric: str) -> dict[str, Any]:
    """The model's `metric` beside the best baseline's (for the summary); rows named after the model
    (its `_uncalibrated` twin) and an ensemble's members are the model, not a baseline."""
    import math


    def ok(v: Any) -> bool:
        return isinstance(v, (int, float)) and math.isfinite(v)

    base = [(n, r[metric]) for n, r in results.items()
            if not n.startswith((model, "member ")) and isinstance(r, dict) and ok(r.get(metric))]
    pick = (min if metric_mode(metric) == "min" else max)(base, key=lambda kv: kv[1]) if base else ("none", None)
    mine = results.get(model, {}).get(metric)
    return {"metric": metric, "model": mine, "best_baseline": pick[0], "baseline": pick[1],
            "ratio": (mine / pick[1]) if ok(mine) and ok(pick[1]) and pick[1] else None}


def run_demo(out_dir: str | Path = "demo_out", *, size: DemoSize | None = None, console=None) -> dict[str, Any]:
    """Run every stage, print progress, return (and write) the summary."""
    import polars as pl
    import ray
    import yaml
    from rich.console import Console

    from ecomine.data.features import item_catalogue
    from ecomine.demo.serve import serve_and_call
    from ecomine.ensemble.build import build_ensemble
    from ecomine.train.recommend_eval import MODEL_NAME, best_baseline
    from ecomine.train.reports import report_json
    from ecomine.tuning.campaign import run_campaign

    size = size or DemoSize()
    console = console or Console()
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    registry = out / "registry"
    reg = Registry(str(registry))
    stages: list[_Stage] = []
    t_all = time.perf_counter()
    n_stages = 9

    def stage(n: int, name: str):
        console.rule(f"[bold]{n}/{n_stages} {name}")
        return time.perf_counter()

    synthetic = size.data == "synthetic"
    t = stage(1, "synthetic event log" if synthetic else f"read {size.data}")
    if synthetic:
        from ecomine.data.cleaning import clean_frame
        from ecomine.datasets.synthetic import RISKY_COUNTRY, SynthParams, describe, generate, write

        log = generate(SynthParams(users=size.users, items=size.items, days=size.days, seed=size.seed))
        write(log, str(out / "data"))
        facts = {k: v for k, v in describe(log).items() if not isinstance(v, dict)}
        console.print(facts)
        stages.append(_Stage("synthetic log", time.perf_counter() - t, facts))
        t = stage(2, "clean and profile")
        events, report = clean_frame(log.events, name="synthetic")
    else:
        from ecomine.data.cleaning import load_events
        from ecomine.datasets import resolve_data_spec_path

        RISKY_COUNTRY = None
        stages.append(_Stage("read", 0.0, {"data": size.data}))
        t = stage(2, "clean and profile")
        events, report = load_events(load_spec(resolve_data_spec_path(size.data), DataSpec))
    console.print(f"rows {report.rows_read:,} -> kept {report.rows_out:,}; dropped {report.dropped}; changed {report.changed}")
    stages.append(_Stage("clean", time.perf_counter() - t, {"rows_out": report.rows_out, "dropped": report.dropped}))

    if not ray.is_initialized():
        console.print("starting a local Ray ...")
    # Logical CPUs for what the demo schedules at once (Train workers + a Tune trial's
    # driver + Serve replicas); with exactly 2 a campaign was seen to stall on this box.
    ray_is_ours = ensure_ray(local_cpus=max(4, size.workers + 3))
    data_ref = size.data_ref()
    run = {"storage": str(out / "runs"), "registry": str(registry), "tags": ["demo"]}
    scaling = {"num_workers": size.workers, "cpus_per_worker": 1}
    reports: dict[str, Any] = {}
    vs_baselines: dict[str, Any] = {}

    t = stage(3, "train the recommender (Ray Train)")
    spec = TrainSpec.model_validate({
        "data": data_ref,
        "model": {"preset": "recommend_small"},
        "optim": {"epochs": size.epochs, "batch_size": 64 if synthetic else 128, "lr": 3e-3, "early_stopping": {"patience": 2}},
        "scaling": scaling, "run": {"name": "demo-recommend", **run}, "eval": {"ks": [5, 10, 20]},
    })
    outcome = _train_and_promote(spec, reg, console, "recommend: test split (full catalogue)")
    ratios = {}
    for protocol in ("all_items", "new_items"):
        name, value = best_baseline(outcome.results, protocol)
        model = outcome.results[MODEL_NAME][protocol]["NDCG@10"]
        ratios[protocol] = {"metric": "NDCG@10", "model": model, "best_baseline": name, "baseline": value,
                            "ratio": model / value if value else None}
    vs_baselines["recommend"] = ratios
    reports["recommend"] = report_json(outcome.results)
    plot_history(outcome.history, out / "training_curve.png")
    stages.append(_Stage("train recommend", time.perf_counter() - t, {"version": outcome.version, "ratios": ratios}))

    t = stage(4, "train the demand forecaster (PatchTST by Ray Train + LightGBM, their fitted mixture)")
    # two validation origins (the spec's default): the mixture's weights are shrunk by leave-one-origin-out
    demand_eval = {"test_periods": size.demand_test_periods} if size.demand_test_periods else {}
    dspec = TrainSpec.model_validate({
        "task": "demand", "data": data_ref,
        "model": {"preset": "demand_small", "forecaster": "ensemble", "freq": size.demand_freq, "horizon": size.demand_horizon,
                  "context_length": size.demand_context, "patch_length": size.demand_patch,
                  "patch_stride": size.demand_patch, "eval": demand_eval},
        "optim": {"epochs": size.demand_epochs, "batch_size": 128, "lr": 3e-3, "early_stopping": {"patience": 2}},
        "scaling": scaling, "run": {"name": "demo-demand", **run},
    })
    d_out = _train_and_promote(dspec, reg, console, "demand: rolling origins (test)")
    from ecomine.predict.runtime import load_state
    from ecomine.train.demand_task import model_name

    demand_row = model_name(dspec)  # `ensemble`: the PatchTST + LightGBM mixture the version serves
    vs_baselines["demand"] = {m: _best(d_out.results, demand_row, m) for m in ("wape", "pinball")}
    vs_baselines["demand"]["coverage"] = d_out.results[demand_row].get("coverage")
    reports["demand"] = report_json(d_out.results)
    titles = dict(zip(*item_catalogue(events).select("item_id", "item_text").to_dict(as_series=False).values()))
    plotted = plot_forecast(load_state(reg, "demand", [(d_out.version, 1.0)]), out / "demand_forecast.png",
                            titles=titles)
    stages.append(_Stage("train demand", time.perf_counter() - t, {"version": d_out.version, "vs_baselines": vs_baselines["demand"]}))

    t = stage(5, "train the risk scorer (Ray Train, frozen text encoder)")
    split = {"test_days": size.risk_test_days, "valid_days": size.risk_valid_days, **(size.risk_split or {})}
    rspec = TrainSpec.model_validate({
        "task": "risk", "data": data_ref,
        "model": {"mode": "frozen", "text": size.risk_text, "max_length": 64, "horizon_days": size.risk_horizon_days,
                  "pos_weight": "auto", "max_train_lines": size.risk_max_train_lines, "split": split},
        "optim": {"epochs": size.risk_epochs, "batch_size": 256, "lr": 2e-3, "early_stopping": {"patience": 2}},
        "scaling": scaling, "run": {"name": "demo-risk", **run},
    })
    r_out = _train_and_promote(rspec, reg, console, "risk: temporal holdout (test)")
    from ecomine.train.risk_eval import MODEL_NAME as RISK_MODEL
    from ecomine.train.risk_eval import write_reliability_plot

    vs_baselines["risk"] = {m: _best(r_out.results, RISK_MODEL, m)
                            for m in ("roc_auc", "pr_auc", "brier")}
    reports["risk"] = report_json(r_out.results)
    write_reliability_plot(r_out.results, out / "risk_calibration.png", title="risk: reliability on the test split")
    stages.append(_Stage("train risk", time.perf_counter() - t, {"version": r_out.version, "vs_baselines": vs_baselines["risk"]}))

    t = stage(6, "tuning campaign (Ray Tune, ASHA)")
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
    # the demo's own campaign: a second `make demo` runs it again instead of refusing a name already used
    shutil.rmtree(out / "tune_runs" / "demo-campaign", ignore_errors=True)
    camp = run_campaign(campaign, console=console)
    stages.append(_Stage("tune", time.perf_counter() - t, {"trials": camp.trials, "versions": camp.versions, "best": camp.best}))

    t = stage(7, "ensemble: the trained model, the campaign's trials and item-kNN, fitted on validation")
    from ecomine.train.runner import run_baseline

    knn = run_baseline(spec.model_copy(update={"run": spec.run.model_copy(update={"name": "demo-item-knn"})}), "item_knn")
    members = [outcome.version, *camp.versions, knn.version]
    ens = build_ensemble(EnsembleSpec(task="recommend", registry=str(registry), members=[{"version": v} for v in members],
                                      tags=["demo"], promote="production"), console=console)
    console.print(ens.report)
    ratios = {}
    for protocol in ("all_items", "new_items"):
        name, value = best_baseline({k: v for k, v in ens.results.items() if not k.startswith("member ")}, protocol,
                                    model_name="ensemble")
        model = ens.results["ensemble"][protocol]["NDCG@10"]
        ratios[protocol] = {"metric": "NDCG@10", "model": model, "best_baseline": name, "baseline": value,
                            "ratio": model / value if value else None}
    vs_baselines["recommend (served ensemble)"] = ratios
    reports["recommend_ensemble"] = report_json(ens.results)
    stages.append(_Stage("ensemble", time.perf_counter() - t, {"version": ens.version, "members": ens.members,
                                                                "ratios": ratios}))

    t = stage(8, "registry")
    listed = {task: [v.version for v in reg.list(task)] for task in ("recommend", "demand", "risk")}
    for task in listed:
        for v in reg.list(task):
            console.print(f"  {task:>9}  {v.version}  stages={v.stages or '-'}  tags={v.tags}")
    stages.append(_Stage("registry", time.perf_counter() - t, {"versions": listed}))

    t = stage(9, "serve (Ray Serve) and call every route (client SDK)")
    purchases = events.filter(pl.col("event") == "purchase")
    counts = purchases.group_by("user_id").len().filter(pl.col("len") >= 5).sort("user_id")
    user = counts["user_id"][0]
    mine = purchases.filter(pl.col("user_id") == user).sort("ts")
    prices = dict(zip(*purchases.group_by("item_id").agg(pl.col("price").median()).to_dict(as_series=False).values()))
    sample = {
        "user": user, "history": mine["item_id"].to_list()[-10:], "titles": titles, "prices": prices,
        "demand_items": plotted[:2], "demand_horizon": size.demand_horizon, "risky_country": RISKY_COUNTRY,
        "country": mine["country"][0] if "country" in mine.columns else None,
    }
    answers = serve_and_call(registry, sample, console, challenger=outcome.version,  # the single model in shadow
                             ray_is_ours=ray_is_ours, risk_drivers_png=out / "risk_drivers.png")
    stages.append(_Stage("serve", time.perf_counter() - t, answers))

    plots = {"training_curve": out / "training_curve.png", "demand_forecast": out / "demand_forecast.png",
             "risk_calibration": out / "risk_calibration.png", "campaign": camp.plot_png,
             "risk_drivers": out / "risk_drivers.png"}
    summary = {
        "seconds": round(time.perf_counter() - t_all, 1),
        "size": asdict(size),
        "stages": [asdict(s) for s in stages],
        "vs_baselines": vs_baselines,
        "reports": reports,
        "plots": {k: str(v) for k, v in plots.items()},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    _print_summary(console, vs_baselines, summary["seconds"], out, plots)
    if ray_is_ours:
        ray.shutdown()  # Serve (its app was deleted) goes with it, before the next steps are printed
    _print_next_steps(console, registry, sample["history"][-2:])
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
