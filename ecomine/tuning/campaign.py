"""Tuning campaigns: a TuneSpec (tune/*.yaml) run by Ray Tune over the one training path.

Sits after `train` and before `registry` in the flow: each trial is
`ecomine.train.runner.run_training` (the same TorchTrainer and per-worker loop
as `ecomine train`), reporting every epoch to Tune through Ray Train's
`TuneReportCallback`, so ASHA can stop weak trials early. The campaign checks
the search space against the base TrainSpec before any trial starts, shows a
live rich table, resumes with `resume=True`, writes a results parquet and a PNG,
and registers its top-k trials tagged with the campaign name.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ecomine.cluster.env import scoped_env
from ecomine.cluster.session import ensure_ray
from ecomine.specs import SpecError, TrainSpec, TuneSpec, apply_overrides, format_validation_error, load_spec, task_metrics

__all__ = ["Campaign", "CampaignOutcome", "load_campaign", "run_campaign", "free_run_placement_groups"]

# re-exported: it lives in train (the loop records the groups; tuning and its callbacks free them)
from ecomine.train.placement_groups import free_run_placement_groups  # noqa: E402


@dataclass
class Campaign:
    """A validated campaign: the TuneSpec and its base TrainSpec (overrides applied)."""

    spec: TuneSpec
    base: TrainSpec
    source: str


@dataclass
class CampaignOutcome:
    name: str
    folder: Path
    results_parquet: Path
    plot_png: Path
    versions: list[str]
    best: dict[str, Any]
    trials: int
    stopped_early: int
    errored: int = 0


def _path_exists(spec: TrainSpec, dotted: str) -> bool:
    """Does `dotted` name a field of the (task-specific) TrainSpec?"""
    from pydantic import BaseModel

    node: Any = spec
    for key in dotted.split("."):
        if not isinstance(node, BaseModel) or key not in type(node).model_fields:
            return False
        node = getattr(node, key)
    return True


def load_campaign(path: str | Path, overrides: dict[str, Any] | None = None) -> Campaign:
    """Load a TuneSpec (with `--set` overrides of its fields) and check every dimension against its base
    TrainSpec (no Ray yet)."""
    path = Path(path)
    spec = load_spec(path, TuneSpec, overrides=overrides)
    base_path = (path.parent / spec.base).resolve()
    base_raw = yaml.safe_load(load_spec(base_path, TrainSpec).model_dump_json())
    try:
        raw = apply_overrides(base_raw, spec.overrides)
        base = TrainSpec.model_validate(raw)
    except SpecError as e:
        raise SpecError(f"{path}: overrides: {e}") from None
    except Exception as e:  # pydantic ValidationError
        raise SpecError(f"{path}: overrides: " + format_validation_error(e, str(base_path))) from None
    for dotted, dim in spec.space.items():
        if not _path_exists(base, dotted):
            raise SpecError(f"{path}: space.{dotted}: unknown field of the {base.task} TrainSpec")
        for value in dim.endpoints():
            try:
                TrainSpec.model_validate(apply_overrides(raw, {dotted: value}))
            except Exception as e:
                msg = format_validation_error(e, "") if hasattr(e, "errors") else str(e)
                raise SpecError(f"{path}: space.{dotted}: value {value!r} is not valid for the TrainSpec ({msg.lstrip(': ')})") from None
    metric = spec.metric or base.watch()[0]

    if metric not in task_metrics(base.task, base.eval.ks):
        raise SpecError(f"{path}: metric: {metric!r} is not a {base.task} validation metric")
    return Campaign(spec=spec, base=base, source=str(path))


def _search_space(spec: TuneSpec) -> dict[str, Any]:
    from ray import tune

    out = {}
    for dotted, dim in spec.space.items():
        kind = dim.kind()
        if kind == "choice":
            out[dotted] = tune.choice(dim.choice)
        elif kind == "uniform":
            out[dotted] = tune.uniform(*dim.uniform)
        elif kind == "loguniform":
            out[dotted] = tune.loguniform(*dim.loguniform)
        else:
            out[dotted] = tune.randint(*dim.randint)
    return out


def _trial_fn(config: dict[str, Any], *, base: dict[str, Any], storage: str, campaign: str, data) -> None:
    """One Tune trial = one run of the shared training path, reporting every epoch to Tune."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from ecomine.train.runner import run_training

    trial = tune.get_context().get_trial_id()
    raw = apply_overrides(base, {k: v for k, v in config.items()})
    raw = apply_overrides(raw, {"run.name": f"{campaign}-{trial}", "run.storage": storage, "run.register_model": False})
    spec = TrainSpec.model_validate(raw)
    run_training(spec, data=data, callbacks=[TuneReportCallback()], evaluate=False)


class _LiveTable:
    """Keeps a rich table of trials, state and metric on screen (fed by a Tune callback)."""

    def __init__(self, console, metric_key: str, mode: str) -> None:
        from ecomine.tuning.callbacks import TABLES, LiveTableCallback

        self.console, self.key, self.mode = console, metric_key, mode
        self.live = None
        TABLES[id(self)] = self
        self.callback = LiveTableCallback(id(self))

    def __enter__(self):
        from rich.live import Live

        self.live = Live(console=self.console, refresh_per_second=2, transient=False)
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        self.live.__exit__(*exc)
        from ecomine.tuning.callbacks import TABLES

        TABLES.pop(id(self), None)

    def render(self, trials) -> None:
        from rich.table import Table

        t = Table(title="tuning campaign", show_lines=False)
        for col in ("trial", "state", "epochs", self.key, "config"):
            t.add_column(col)
        for tr in trials:
            res = tr.last_result or {}
            value = res.get(self.key)
            cfg = ", ".join(f"{k.rsplit('.', 1)[-1]}={v:.3g}" if isinstance(v, float) else f"{k.rsplit('.', 1)[-1]}={v}"
                            for k, v in (tr.config or {}).items())
            t.add_row(tr.trial_id, str(tr.status), str(res.get("epoch", "-")),
                      f"{value:.4f}" if isinstance(value, float) else "-", cfg)
        if self.live is not None:
            self.live.update(t)


def _scheduler(spec, base):
    """The campaign's trial scheduler: ASHA, PBT over the search space, or FIFO."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    if spec.scheduler.kind == "asha":
        return ASHAScheduler(
            # max_t one past the last epoch: a trial that trains every epoch ends on its own,
            # so its Ray Train run shuts down (and frees its CPUs) before the trial exits.
            time_attr="training_iteration", max_t=base.optim.epochs + 1,
            grace_period=spec.scheduler.grace_period, reduction_factor=spec.scheduler.reduction_factor,
        )
    if spec.scheduler.kind == "pbt":
        return PopulationBasedTraining(
            time_attr="training_iteration", perturbation_interval=spec.scheduler.perturbation_interval,
            hyperparam_mutations=_search_space(spec),
        )
    return FIFOScheduler()


def _search(spec):
    """The campaign's search: seeded random draws holding `max_concurrent` themselves, or Optuna."""
    from ray.tune.search.basic_variant import BasicVariantGenerator

    if spec.search == "optuna":
        try:
            from ray.tune.search.optuna import OptunaSearch
        except ImportError:
            raise SpecError("search: optuna needs the tune extra (pip install 'ecomine[tune]')") from None
        return OptunaSearch(seed=spec.seed)
    # Tune's default random search draws from an unseeded generator: `seed:` would say nothing.
    # A generator ignores TuneConfig.max_concurrent_trials (Tune warns and runs every trial at
    # once), so the limit goes to the generator itself.
    return BasicVariantGenerator(random_state=spec.seed, max_concurrent=spec.max_concurrent)


def run_campaign(path: str | Path, *, resume: bool = False, console=None, ray_address: str | None = None,
                 overrides: dict[str, Any] | None = None) -> CampaignOutcome:
    """Run (or resume) a campaign; see the module docstring."""
    from ray import tune

    from ecomine.train.loop import val_metric_name
    from ecomine.train.runner import check_cluster, preflight
    from ecomine.train.tasks import get_task

    campaign = load_campaign(path, overrides)
    spec, base = campaign.spec, campaign.base
    metric = spec.metric or base.watch()[0]
    mode = spec.mode or base.watch()[1]
    key = val_metric_name(metric)
    preflight(base)
    forecaster = getattr(base.model, "forecaster", None)
    if forecaster in ("lightgbm", "ensemble"):
        raise SpecError(f"{path}: base.model.forecaster: {forecaster} is not one Ray Train run; a campaign searches "
                        f"PatchTST runs (train a {forecaster} version with `ecomine train`)")
    ensure_ray(ray_address)
    check_cluster(base)
    folder = Path(spec.storage).expanduser().resolve() / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    task = get_task(base.task)
    data = task.prepare(base)  # once per campaign; with_parameters ships it through the object store
    base_raw = base.model_dump(mode="json")
    trainable = tune.with_resources(
        tune.with_parameters(_trial_fn, base=base_raw, storage=str(folder / "trials"), campaign=spec.name, data=data),
        {"CPU": spec.trial_cpus},
    )
    scheduler, search_alg = _scheduler(spec, base), _search(spec)
    exp_dir = folder / "tune"
    live = _LiveTable(console, key, mode) if console is not None else None
    from ecomine.tuning.callbacks import FreeStoppedTrialsCallback

    callbacks = [FreeStoppedTrialsCallback(str(folder / "trials"), spec.name)] + ([live.callback] if live else [])
    if resume:
        if not tune.Tuner.can_restore(str(exp_dir)):
            raise SpecError(f"{campaign.source}: nothing to resume at {exp_dir}")
        tuner = tune.Tuner.restore(str(exp_dir), trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        if tune.Tuner.can_restore(str(exp_dir)):
            raise SpecError(f"{campaign.source}: campaign {spec.name!r} already ran at {exp_dir}; use --resume or a new name")
        tuner = tune.Tuner(
            trainable,
            param_space=_search_space(spec),
            tune_config=tune.TuneConfig(
                metric=key, mode=mode, scheduler=scheduler, search_alg=search_alg,
                num_samples=spec.num_samples,
                max_concurrent_trials=None if spec.search != "optuna" else spec.max_concurrent,
                time_budget_s=spec.time_budget_s,
                # A stopped trial's process must exit: its Ray Train controller (and the
                # placement group holding the workers' CPUs) is owned by it. A reused
                # actor keeps the stopped run training and the next trials starve.
                reuse_actors=False,
            ),
            run_config=tune.RunConfig(name="tune", storage_path=str(folder), callbacks=callbacks, verbose=0),
        )
    t0 = time.perf_counter()
    with _ray_tune_quiet():
        if live:
            with live:
                grid = tuner.fit()
        else:
            grid = tuner.fit()
    frame = _results_frame(grid, key)
    results_parquet = folder / "results.parquet"
    frame.write_parquet(results_parquet)
    plot_png = folder / "campaign.png"
    _plot(frame, key, mode, plot_png, title=f"{spec.name}: {key}")
    versions = _export_top_k(campaign, frame, key, mode, folder, data)
    summary = _summary(frame, key, mode)
    (folder / "summary.json").write_text(json.dumps({**summary, "versions": versions, "seconds": time.perf_counter() - t0}, indent=2, default=str))
    return CampaignOutcome(
        name=spec.name, folder=folder, results_parquet=results_parquet, plot_png=plot_png, versions=versions,
        best=summary.get("best", {}), trials=summary["trials"], stopped_early=summary["stopped_early"],
        errored=summary["errored"],
    )


def _ray_tune_quiet():
    """Ray Tune's new terminal output prints its experiment box, "View detailed results here" and a
    TensorBoard hint even at `verbose=0` (`tune.experimental.output.TuneReporterBase.experiment_started`);
    its legacy reporter at verbose 0 prints nothing. Our live table and summary say what a user needs,
    so the fit runs with the legacy path (RAY_AIR_NEW_OUTPUT=0, read by `get_air_verbosity`), unset after;
    a user who set RAY_AIR_NEW_OUTPUT keeps their choice."""
    return scoped_env({"RAY_AIR_NEW_OUTPUT": "0"})


def _results_frame(grid, key: str):
    """One row per trial per reported epoch (config columns prefixed `config.`)."""
    import polars as pl

    rows = []
    for result in grid:
        trial = result.path.rsplit("/", 1)[-1] if result.path else "?"
        trial_id = (result.metrics or {}).get("trial_id", trial)
        df = result.metrics_dataframe
        cfg = {f"config.{k}": v for k, v in (result.config or {}).items()}
        if df is None or len(df) == 0:
            rows.append({"trial_id": trial_id, "epoch": 0, key: None, "error": str(result.error) if result.error else None, **cfg})
            continue
        for rec in df.to_dict("records"):
            rows.append({
                "trial_id": trial_id, "epoch": int(rec.get("epoch", rec.get("training_iteration", 0))),
                "time_total_s": float(rec.get("time_total_s", math.nan)), "timestamp": rec.get("timestamp"),
                key: rec.get(key), "train_loss": rec.get("train_loss"), "error": str(result.error) if result.error else None,
                **cfg,
            })
    return pl.DataFrame(rows, infer_schema_length=None)


def _summary(frame, key: str, mode: str) -> dict[str, Any]:
    import polars as pl

    per_trial = frame.group_by("trial_id").agg(
        (pl.col(key).max() if mode == "max" else pl.col(key).min()).alias("best"), pl.col("epoch").max().alias("epochs"),
        pl.col("error").is_not_null().any().alias("errored"),
    )
    max_epochs = per_trial["epochs"].max()
    best = per_trial.sort("best", descending=mode == "max", nulls_last=True).row(0, named=True) if per_trial.height else {}
    ok = per_trial.filter(~pl.col("errored"))
    return {
        "trials": per_trial.height,
        # a trial that failed is not one ASHA stopped
        "stopped_early": int((ok["epochs"] < max_epochs).sum()) if ok.height else 0,
        "errored": per_trial.height - ok.height,
        "best": best,
    }


def _plot(frame, key: str, mode: str, out: Path, *, title: str) -> None:
    """Left: metric per trial over epochs. Right: best-so-far over campaign time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import polars as pl

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.set_prop_cycle(color=plt.cm.tab20.colors)  # the default cycle repeats after ten trials
    for (trial,), g in frame.filter(pl.col(key).is_not_null()).group_by(["trial_id"], maintain_order=True):
        g = g.sort("epoch")
        a.plot(g["epoch"], g[key], marker="o", ms=3, label=str(trial))
    a.set_xlabel("epoch")
    a.set_ylabel(key)
    a.set_title("metric per trial")
    if frame.height <= 200:
        a.legend(fontsize=6, ncol=2)
    done = frame.filter(pl.col(key).is_not_null() & pl.col("timestamp").is_not_null()).sort("timestamp") if "timestamp" in frame.columns else frame.clear()
    if done.height:
        t = done["timestamp"].to_numpy().astype(float)
        v = done[key].to_numpy().astype(float)
        import numpy as np

        best = np.maximum.accumulate(v) if mode == "max" else np.minimum.accumulate(v)
        b.step(t - t[0], best, where="post")
    b.set_xlabel("seconds since first result")
    b.set_ylabel(f"best {key} so far")
    b.set_title("best so far")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _export_top_k(campaign: Campaign, frame, key: str, mode: str, folder: Path, data) -> list[str]:
    """Evaluate the k best trials' best checkpoints on the test split and register them."""
    import polars as pl

    from ecomine.train.loop import load_checkpoint_dir
    from ecomine.train.runner import best_checkpoint_state, register_trained
    from ecomine.train.tasks import get_task

    spec, base = campaign.spec, campaign.base
    if spec.export_top_k == 0:
        return []
    metric = spec.metric or base.watch()[0]
    per_trial = (
        frame.filter(pl.col(key).is_not_null())
        .group_by("trial_id")
        .agg((pl.col(key).max() if mode == "max" else pl.col(key).min()).alias("best"))
        .sort("best", descending=mode == "max")
        .head(spec.export_top_k)
    )
    task = get_task(base.task)
    versions = []
    for row in per_trial.iter_rows(named=True):
        trial = row["trial_id"]
        config = {k.removeprefix("config."): v for k, v in frame.filter(pl.col("trial_id") == trial).row(0, named=True).items()
                  if k.startswith("config.") and v is not None}
        raw = apply_overrides(base.model_dump(mode="json"), config)
        trial_spec = TrainSpec.model_validate(
            apply_overrides(raw, {"run.name": f"{spec.name}-{trial}", "run.storage": str(folder / "trials")})
        )
        found = best_checkpoint_state(folder / "trials" / f"{spec.name}-{trial}", metric, mode)
        if found is None:
            continue
        ckpt_dir, _ = found
        trial_data = task.adapt(data, trial_spec)
        model = task.build_model(trial_spec, trial_data, None)
        state = load_checkpoint_dir(ckpt_dir, model)
        state.pop("optimizer", None)
        model.eval()
        results = task.evaluate(model, trial_data, trial_spec)
        versions.append(
            register_trained(trial_spec, task, model, trial_data, results, state, trial_spec.run.name,
                             extra_tags=[spec.name, "campaign", f"trial:{trial}"])
        )
    return versions
