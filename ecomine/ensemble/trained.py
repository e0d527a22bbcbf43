"""`ecomine train` of a spec whose model is an ensemble: train its members, fit their mixture, register one version.

Sits in `ensemble` beside `build`, above `train` (which cannot call up): `ecomine
train`, `ecomine retrain` and the demo call `train_version`. A plain spec goes to
`train.runner.run_training`; a demand spec with `model.forecaster: ensemble` goes to
`train_demand_ensemble`:

1. the data is prepared once;
2. the PatchTST member trains by Ray Train (``model.seeds`` of them, with seeds ``optim.seed``,
   +1, ...: averaged with equal weights, one fitted weight for the group) and the LightGBM member fits on the driver,
   on the same windows and origins, each registered as an ordinary version (its own
   report; tags `member`, `member-of:<run>`). Unless `model.lightgbm` says otherwise,
   the LightGBM member has the report's LightGBM baseline settings (`eval.lightgbm_rounds`,
   `eval.lightgbm_max_rows`): the same model on the same windows, so the mixture holds
   the baseline it is compared with;
3. `build.build_ensemble` fits their quantile mixture on the validation origins (the
   pinball LP, shrunk toward uniform by leave-one-origin-out CV), evaluates it on the
   test origins beside both members and the baselines, and registers it (`run:<run>`):
   that version is the run's, the one `serve` and `retrain` see.

If any step fails, the members this run registered are deleted again: a failed run
leaves nothing half-way in the registry.
"""

from __future__ import annotations

import time

from ecomine.specs import EnsembleSpec, TrainSpec
from ecomine.train.runner import TrainOutcome, run_lightgbm, run_name, run_training

__all__ = ["train_version", "train_demand_ensemble", "member_spec"]


def train_version(spec: TrainSpec, *, ray_address: str | None = None, console=None, data=None) -> TrainOutcome:
    """Train, evaluate and register what the spec describes, one model or an ensemble of them."""
    if spec.task == "demand" and spec.model.forecaster == "ensemble":
        return train_demand_ensemble(spec, ray_address=ray_address, console=console, data=data)
    return run_training(spec, ray_address=ray_address, console=console, data=data)


def member_spec(spec: TrainSpec, forecaster: str, run: str, seed: int = 0) -> TrainSpec:
    """The spec of one member of a `forecaster: ensemble` run: the same data, windows and origins
    (``seed``: the k-th PatchTST seed, trained with ``optim.seed + k``)."""
    raw = spec.model_dump(mode="json")
    model = {**raw["model"], "forecaster": forecaster, "seeds": 1}
    if forecaster == "patchtst":
        model.pop("lightgbm", None)
    elif model.get("lightgbm") is None:  # unset: the report's LightGBM baseline, so the mixture contains it
        ev = model["eval"]
        model["lightgbm"] = {"rounds": ev["lightgbm_rounds"], "max_rows": ev["lightgbm_max_rows"]}
    tags = [*spec.run.tags, "member", f"member-of:{run}"]
    name = f"{run}-{forecaster}" + (f"-s{seed}" if seed else "")
    optim = {**raw["optim"], "seed": raw["optim"]["seed"] + seed}
    return TrainSpec.model_validate({**raw, "model": model, "optim": optim, "run": {**raw["run"], "name": name, "tags": tags}})


def train_demand_ensemble(spec: TrainSpec, *, ray_address: str | None = None, console=None, data=None) -> TrainOutcome:
    """See the module docstring: two members, their fitted mixture, one version."""
    from ecomine.ensemble.build import build_ensemble
    from ecomine.registry import Registry
    from ecomine.train.tasks import get_task

    t0 = time.perf_counter()
    name = run_name(spec)
    seeds = spec.model.seeds
    neural = [member_spec(spec, "patchtst", name, seed=k) for k in range(seeds)]
    booster = member_spec(spec, "lightgbm", name)
    task = get_task("demand")
    data = task.adapt(data, neural[0]) if data is not None else task.prepare(neural[0])
    registered: list[str] = []
    n = seeds + 1
    try:
        outs = []
        for k, member in enumerate(neural):
            if console is not None:
                seed = f", seed {member.optim.seed}" if seeds > 1 else ""
                console.print(f"[bold]{name}[/]: member {k + 1}/{n}, the PatchTST forecaster (Ray Train{seed})")
            out = run_training(member, ray_address=ray_address, console=console, data=data)
            registered.append(out.version)
            outs.append(out)
        first = outs[0]  # seed 0: the run's training history and stop reason
        if console is not None:
            console.print(f"[bold]{name}[/]: member {n}/{n}, the LightGBM forecaster (driver)")
        second = run_lightgbm(booster, data=data)
        registered.append(second.version)
        if console is not None:
            console.print(f"[bold]{name}[/]: their mixture, fitted on the validation origins")
        group = "patchtst" if seeds > 1 else None  # the seeds: averaged, one fitted weight
        refs = [{"version": v, "group": group} for v in registered[:-1]] + [{"version": registered[-1]}]
        ens = build_ensemble(
            EnsembleSpec(task="demand", registry=spec.run.registry, members=refs,
                         tags=[*spec.run.tags, f"run:{name}"]),
            console=console, source=f"run {name}", data=data,
        )
    except BaseException:
        registry = Registry(spec.run.registry)
        for version in registered:
            try:
                registry.delete("demand", version)
            except Exception:  # noqa: BLE001 - the original failure is the one to report
                pass
        raise
    return TrainOutcome(
        run_name=name, results=ens.results, history=first.history, version=ens.version, registry=spec.run.registry,
        best_epoch=first.best_epoch, seconds=time.perf_counter() - t0, stopped_on=first.stopped_on,
    )
