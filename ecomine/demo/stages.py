"""`ecomine demo`'s named stages: each one step of the platform, reading and adding to one ``DemoRun``.

Sits under ``demo.run`` (which runs them in order, prints the summary and writes it) and over
every verb the demo shows: ``datasets``/``data`` (the log, cleaning), ``ensemble.trained``
(``ecomine train`` for each task), ``tuning`` (a campaign), ``ensemble.build``, ``registry``
and ``demo.serve`` (Ray Serve and the client SDK). A stage returns its ``StageRecord``
(name, seconds, what it made); what later stages need it leaves on the ``DemoRun``.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecomine.demo.plots import plot_forecast, plot_history
from ecomine.registry import Registry
from ecomine.specs import DataSpec, EnsembleSpec, TrainSpec, load_spec, metric_mode

__all__ = ["StageRecord", "DemoRun", "STAGES", "data_stage", "recommend_stage", "demand_stage", "risk_stage",
           "tune_stage", "ensemble_stage", "registry_stage", "serve_stage"]


@dataclass
class StageRecord:
    name: str
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class DemoRun:
    """What one demo run has made so far: its folder, registry, data and each stage's outputs."""

    out: Path
    size: Any  # DemoSize
    console: Any
    reg: Registry = field(init=False)
    events: Any = None
    risky_country: str | None = None
    titles: dict[str, str] = field(default_factory=dict)
    reports: dict[str, Any] = field(default_factory=dict)
    vs_baselines: dict[str, Any] = field(default_factory=dict)
    plots: dict[str, Path] = field(default_factory=dict)
    # what later stages read: the trained recommender (its spec and version), the campaign's exports,
    # the items the demand plot drew, the sample customer's history the serve stage sent
    recommend_spec: Any = None  # TrainSpec
    recommend_version: str | None = None
    campaign_versions: list[str] = field(default_factory=list)
    demand_items: list[str] = field(default_factory=list)
    history: list[str] = field(default_factory=list)
    ray_is_ours: bool = False

    def __post_init__(self) -> None:
        self.reg = Registry(str(self.registry))

    @property
    def registry(self) -> Path:
        return self.out / "registry"

    @property
    def synthetic(self) -> bool:
        return self.size.data == "synthetic"

    def run_fields(self) -> dict[str, Any]:
        return {"storage": str(self.out / "runs"), "registry": str(self.registry), "tags": ["demo"]}

    def scaling(self) -> dict[str, Any]:
        return {"num_workers": self.size.workers, "cpus_per_worker": 1}


def _train_and_promote(spec, demo: DemoRun, title: str):
    """One task through Ray Train; its report beside the baselines; the version promoted to production."""
    from ecomine.ensemble.trained import train_version
    from ecomine.train.tasks import get_task

    outcome = train_version(spec, console=demo.console)
    demo.console.print(get_task(spec.task).format_report(outcome.results, title=title))
    demo.reg.promote(spec.task, outcome.version, "production")
    return outcome


def _ok(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _best(results: dict[str, Any], model: str, metric: str) -> dict[str, Any]:
    """The model's `metric` beside the best baseline's (for the summary); rows named after the model
    (its `_uncalibrated` twin) and an ensemble's members are the model, not a baseline."""
    base = [(n, r[metric]) for n, r in results.items()
            if not n.startswith((model, "member ")) and isinstance(r, dict) and _ok(r.get(metric))]
    pick = (min if metric_mode(metric) == "min" else max)(base, key=lambda kv: kv[1]) if base else ("none", None)
    mine = results.get(model, {}).get(metric)
    return {"metric": metric, "model": mine, "best_baseline": pick[0], "baseline": pick[1],
            "ratio": (mine / pick[1]) if _ok(mine) and _ok(pick[1]) and pick[1] else None}


def _ranking_ratios(results: dict[str, Any], model: str) -> dict[str, Any]:
    """NDCG@10 of ``model`` beside the best baseline, for both recommend protocols."""
    from ecomine.train.recommend_eval import best_baseline

    ratios = {}
    for protocol in ("all_items", "new_items"):
        name, value = best_baseline(results, protocol, model_name=model)
        mine = results[model][protocol]["NDCG@10"]
        ratios[protocol] = {"metric": "NDCG@10", "model": mine, "best_baseline": name, "baseline": value,
                            "ratio": mine / value if value else None}
    return ratios


def data_stage(demo: DemoRun) -> list[StageRecord]:
    """Synthesise the log (or read the named data set), then clean and profile it."""
    t = time.perf_counter()
    records = []
    if demo.synthetic:
        from ecomine.data.cleaning import clean_frame
        from ecomine.datasets.synthetic import RISKY_COUNTRY, SynthParams, describe, generate, write

        size = demo.size
        log = generate(SynthParams(users=size.users, items=size.items, days=size.days, seed=size.seed))
        write(log, str(demo.out / "data"))
        facts = {k: v for k, v in describe(log).items() if not isinstance(v, dict)}
        demo.console.print(facts)
        records.append(StageRecord("synthetic log", time.perf_counter() - t, facts))
        demo.console.rule("[bold]clean and profile")
        t = time.perf_counter()
        demo.risky_country = RISKY_COUNTRY
        events, report = clean_frame(log.events, name="synthetic")
    else:
        from ecomine.data.cleaning import load_events
        from ecomine.datasets import resolve_data_spec_path

        records.append(StageRecord("read", 0.0, {"data": demo.size.data}))
        demo.console.rule("[bold]clean and profile")
        events, report = load_events(load_spec(resolve_data_spec_path(demo.size.data), DataSpec))
    demo.console.print(f"rows {report.rows_read:,} -> kept {report.rows_out:,}; dropped {report.dropped}; changed {report.changed}")
    records.append(StageRecord("clean", time.perf_counter() - t, {"rows_out": report.rows_out, "dropped": report.dropped}))
    demo.events = events
    return records


def recommend_stage(demo: DemoRun) -> StageRecord:
    """The recommender through Ray Train, beside its baselines; its training curve."""
    from ecomine.train.recommend_eval import MODEL_NAME
    from ecomine.train.reports import report_json

    t = time.perf_counter()
    spec = TrainSpec.model_validate({
        "data": demo.size.data_ref(),
        "model": {"preset": "recommend_small"},
        "optim": {"epochs": demo.size.epochs, "batch_size": 64 if demo.synthetic else 128, "lr": 3e-3,
                  "early_stopping": {"patience": 2}},
        "scaling": demo.scaling(), "run": {"name": "demo-recommend", **demo.run_fields()}, "eval": {"ks": [5, 10, 20]},
    })
    outcome = _train_and_promote(spec, demo, "recommend: test split (full catalogue)")
    ratios = _ranking_ratios(outcome.results, MODEL_NAME)
    demo.vs_baselines["recommend"] = ratios
    demo.reports["recommend"] = report_json(outcome.results)
    demo.plots["training_curve"] = demo.out / "training_curve.png"
    plot_history(outcome.history, demo.plots["training_curve"])
    demo.recommend_spec, demo.recommend_version = spec, outcome.version
    return StageRecord("train recommend", time.perf_counter() - t, {"version": outcome.version, "ratios": ratios})


def demand_stage(demo: DemoRun) -> StageRecord:
    """The PatchTST by Ray Train and a LightGBM member, their fitted mixture; a forecast band plot."""
    from ecomine.data.features import item_catalogue
    from ecomine.predict.runtime import load_state
    from ecomine.train.demand_task import model_name
    from ecomine.train.reports import report_json

    t, size = time.perf_counter(), demo.size
    # two validation origins (the spec's default): the mixture's weights are shrunk by leave-one-origin-out
    demand_eval = {"test_periods": size.demand_test_periods} if size.demand_test_periods else {}
    spec = TrainSpec.model_validate({
        "task": "demand", "data": size.data_ref(),
        "model": {"preset": "demand_small", "forecaster": "ensemble", "freq": size.demand_freq, "horizon": size.demand_horizon,
                  "context_length": size.demand_context, "patch_length": size.demand_patch,
                  "patch_stride": size.demand_patch, "eval": demand_eval},
        "optim": {"epochs": size.demand_epochs, "batch_size": 128, "lr": 3e-3, "early_stopping": {"patience": 2}},
        "scaling": demo.scaling(), "run": {"name": "demo-demand", **demo.run_fields()},
    })
    outcome = _train_and_promote(spec, demo, "demand: rolling origins (test)")
    row = model_name(spec)  # `ensemble`: the PatchTST + LightGBM mixture the version serves
    found = {m: _best(outcome.results, row, m) for m in ("wape", "pinball")}
    found["coverage"] = outcome.results[row].get("coverage")
    demo.vs_baselines["demand"] = found
    demo.reports["demand"] = report_json(outcome.results)
    demo.titles = dict(zip(*item_catalogue(demo.events).select("item_id", "item_text").to_dict(as_series=False).values()))
    demo.demand_items = plot_forecast(load_state(demo.reg, "demand", [(outcome.version, 1.0)]),
                                              demo.out / "demand_forecast.png", titles=demo.titles)
    demo.plots["demand_forecast"] = demo.out / "demand_forecast.png"
    return StageRecord("train demand", time.perf_counter() - t, {"version": outcome.version, "vs_baselines": found})


def risk_stage(demo: DemoRun) -> StageRecord:
    """The risk scorer by Ray Train over a frozen text encoder; its reliability curve."""
    from ecomine.train.reports import report_json
    from ecomine.train.risk_eval import MODEL_NAME as RISK_MODEL
    from ecomine.train.risk_eval import write_reliability_plot

    t, size = time.perf_counter(), demo.size
    split = {"test_days": size.risk_test_days, "valid_days": size.risk_valid_days, **(size.risk_split or {})}
    spec = TrainSpec.model_validate({
        "task": "risk", "data": size.data_ref(),
        "model": {"mode": "frozen", "text": size.risk_text, "max_length": 64, "horizon_days": size.risk_horizon_days,
                  "pos_weight": "auto", "max_train_lines": size.risk_max_train_lines, "split": split},
        "optim": {"epochs": size.risk_epochs, "batch_size": 256, "lr": 2e-3, "early_stopping": {"patience": 2}},
        "scaling": demo.scaling(), "run": {"name": "demo-risk", **demo.run_fields()},
    })
    outcome = _train_and_promote(spec, demo, "risk: temporal holdout (test)")
    found = {m: _best(outcome.results, RISK_MODEL, m) for m in ("roc_auc", "pr_auc", "brier")}
    demo.vs_baselines["risk"] = found
    demo.reports["risk"] = report_json(outcome.results)
    demo.plots["risk_calibration"] = demo.out / "risk_calibration.png"
    write_reliability_plot(outcome.results, demo.plots["risk_calibration"], title="risk: reliability on the test split")
    return StageRecord("train risk", time.perf_counter() - t, {"version": outcome.version, "vs_baselines": found})


def tune_stage(demo: DemoRun) -> StageRecord:
    """A small Ray Tune campaign (ASHA) around the recommender's spec; its top trials exported."""
    import yaml

    from ecomine.tuning.campaign import run_campaign

    t, size = time.perf_counter(), demo.size
    base = demo.out / "tune" / "base.yaml"
    base.parent.mkdir(parents=True, exist_ok=True)
    base.write_text(yaml.safe_dump(demo.recommend_spec.model_dump(mode="json"), sort_keys=False))
    campaign = demo.out / "tune" / "demo.yaml"
    campaign.write_text(yaml.safe_dump({
        "kind": "tune", "name": "demo-campaign", "base": "base.yaml",
        "overrides": {"optim.epochs": size.tune_epochs, "optim.early_stopping": None, "run.tags": ["demo"]},
        "space": {"optim.lr": "loguniform 1e-3 1e-2", "model.backbone.hidden": "choice [32, 64]"},
        "num_samples": size.tune_samples, "max_concurrent": 1, "storage": str(demo.out / "tune_runs"), "export_top_k": 2,
        "seed": size.seed,
    }, sort_keys=False))
    # the demo's own campaign: a second `make demo` runs it again instead of refusing a name already used
    shutil.rmtree(demo.out / "tune_runs" / "demo-campaign", ignore_errors=True)
    camp = run_campaign(campaign, console=demo.console)
    demo.campaign_versions = list(camp.versions)
    demo.plots["campaign"] = camp.plot_png
    return StageRecord("tune", time.perf_counter() - t, {"trials": camp.trials, "versions": camp.versions, "best": camp.best})


def ensemble_stage(demo: DemoRun) -> StageRecord:
    """The trained recommender, the campaign's trials and item-kNN, weights fitted on validation; promoted."""
    from ecomine.ensemble.build import build_ensemble
    from ecomine.train.reports import report_json
    from ecomine.train.runner import run_baseline

    t = time.perf_counter()
    spec = demo.recommend_spec
    knn = run_baseline(spec.model_copy(update={"run": spec.run.model_copy(update={"name": "demo-item-knn"})}), "item_knn")
    members = [demo.recommend_version, *demo.campaign_versions, knn.version]
    ens = build_ensemble(EnsembleSpec(task="recommend", registry=str(demo.registry), members=[{"version": v} for v in members],
                                      tags=["demo"], promote="production"), console=demo.console)
    demo.console.print(ens.report)
    ratios = _ranking_ratios({k: v for k, v in ens.results.items() if not k.startswith("member ")}, "ensemble")
    demo.vs_baselines["recommend (served ensemble)"] = ratios
    demo.reports["recommend_ensemble"] = report_json(ens.results)
    return StageRecord("ensemble", time.perf_counter() - t, {"version": ens.version, "members": ens.members, "ratios": ratios})


def registry_stage(demo: DemoRun) -> StageRecord:
    """Every version the demo registered, with its stages and tags."""
    t = time.perf_counter()
    listed = {}
    for task in ("recommend", "demand", "risk"):
        versions = demo.reg.list(task)
        listed[task] = [v.version for v in versions]
        for v in versions:
            demo.console.print(f"  {task:>9}  {v.version}  stages={v.stages or '-'}  tags={v.tags}")
    return StageRecord("registry", time.perf_counter() - t, {"versions": listed})


def serve_stage(demo: DemoRun) -> StageRecord:
    """serve_configs/local.yaml's app on Ray Serve, every route called through the client SDK."""
    import polars as pl

    from ecomine.demo.serve import serve_and_call

    t = time.perf_counter()
    purchases = demo.events.filter(pl.col("event") == "purchase")
    counts = purchases.group_by("user_id").len().filter(pl.col("len") >= 5).sort("user_id")
    user = counts["user_id"][0]
    mine = purchases.filter(pl.col("user_id") == user).sort("ts")
    prices = dict(zip(*purchases.group_by("item_id").agg(pl.col("price").median()).to_dict(as_series=False).values()))
    sample = {
        "user": user, "history": mine["item_id"].to_list()[-10:], "titles": demo.titles, "prices": prices,
        "demand_items": demo.demand_items[:2], "demand_horizon": demo.size.demand_horizon,
        "risky_country": demo.risky_country, "country": mine["country"][0] if "country" in mine.columns else None,
    }
    demo.history = list(sample["history"])
    demo.plots["risk_drivers"] = demo.out / "risk_drivers.png"
    answers = serve_and_call(demo.registry, sample, demo.console, challenger=demo.recommend_version,  # in shadow
                             ray_is_ours=demo.ray_is_ours, risk_drivers_png=demo.plots["risk_drivers"])
    return StageRecord("serve", time.perf_counter() - t, answers)


# (title printed, stage) in the order they run; data_stage comes first and starts no Ray
STAGES = (
    ("train the recommender (Ray Train)", recommend_stage),
    ("train the demand forecaster (PatchTST by Ray Train + LightGBM, their fitted mixture)", demand_stage),
    ("train the risk scorer (Ray Train, frozen text encoder)", risk_stage),
    ("tuning campaign (Ray Tune, ASHA)", tune_stage),
    ("ensemble: the trained model, the campaign's trials and item-kNN, fitted on validation", ensemble_stage),
    ("registry", registry_stage),
    ("serve (Ray Serve) and call every route (client SDK)", serve_stage),
)
