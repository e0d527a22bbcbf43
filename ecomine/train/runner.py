"""The training driver: TrainSpec -> Ray Train TorchTrainer -> evaluated, registered model.

Sits at the end of `train` (the registry comes after it). Three layers, as in
Made-With-ML: step functions (`ecomine.models`), the per-worker loop
(`ecomine.train.loop`), and this driver, which checks the spec against the
cluster BEFORE any Ray job starts, builds ScalingConfig/RunConfig, shows
progress, evaluates the best checkpoint on the test split beside the baselines,
and registers the version (or nothing, if anything fails).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ecomine.cluster.session import ensure_ray
from ecomine.cluster.env import train_env
from ecomine.specs import SpecError, TrainSpec
from ecomine.specs.train import metric_mode
from ecomine.train.background import BackgroundThread

__all__ = [
    "TrainOutcome", "preflight", "check_cluster", "run_training", "run_name", "storage_path",
    "register_trained", "best_checkpoint_state", "run_baseline", "run_lightgbm", "time_to_quality",
]


@dataclass
class TrainOutcome:
    run_name: str
    results: dict[str, Any]  # evaluation report: model + baselines, both protocols
    history: list[dict[str, Any]]
    version: str | None
    registry: str
    best_epoch: int | None
    seconds: float
    warm_start: dict[str, Any] | None = None  # what a warm start carried over (ecomine.train.warm_start)
    stopped_on: str | None = None  # why training ended: plateau | budget | epochs (None: no loop, e.g. a baseline)

    def time_to_quality(self, metric: str) -> list[dict[str, float]]:
        """Validation `metric` against minutes of training, one row per epoch (see `time_to_quality`)."""
        return time_to_quality(self.history, metric)


def time_to_quality(history: list[dict[str, Any]], metric: str) -> list[dict[str, float]]:
    """[{epoch, minutes, val_<metric>, best}] from a loop history: what a user reads to see how soon the
    model was good (minutes count the training loop, validation included, not data preparation)."""
    key, rows, best = f"val_{metric}", [], None
    for rec in history:
        if "elapsed_s" not in rec or key not in rec:
            continue
        value = float(rec[key])
        best = value if best is None else max(best, value) if metric_mode(metric) == "max" else min(best, value)
        rows.append({"epoch": int(rec["epoch"]), "minutes": round(rec["elapsed_s"] / 60, 3), key: value, "best": best})
    return rows


def run_name(spec: TrainSpec) -> str:
    return spec.run.name or f"{spec.task}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"


def storage_path(spec: TrainSpec) -> str:
    s = spec.run.storage
    return s if s.startswith("s3://") else str(Path(s).expanduser().resolve())


def preflight(spec: TrainSpec) -> None:
    """Checks that need no Ray: named sources exist. Raises SpecError naming the field."""
    if getattr(spec.model, "item_init", None) == "text":
        from ecomine.models.text_encoder import EncoderNotFound, resolve_encoder

        try:
            resolve_encoder(spec.model.text_encoder)
        except EncoderNotFound as e:
            raise SpecError(f"model.text_encoder: {e}") from None
    if spec.scaling.use_gpu:
        import torch

        if not torch.cuda.is_available() and os.environ.get("ECOMINE_ALLOW_REMOTE_GPU") != "1":
            raise SpecError("scaling.use_gpu: true but this machine sees no GPU (set ECOMINE_ALLOW_REMOTE_GPU=1 for a remote cluster)")


def check_cluster(spec: TrainSpec) -> None:
    """The workers fit in the cluster, else SpecError naming scaling.* (a Train run would wait forever)."""
    import ray

    res = ray.cluster_resources()
    need_cpu = spec.scaling.num_workers * spec.scaling.cpus_per_worker
    have_cpu = res.get("CPU", 0.0)
    if need_cpu > have_cpu:
        raise SpecError(
            f"scaling.num_workers: {spec.scaling.num_workers} workers x {spec.scaling.cpus_per_worker} CPU "
            f"need {need_cpu:g} CPUs but the Ray cluster has {have_cpu:g}"
        )
    if spec.scaling.use_gpu and res.get("GPU", 0.0) < spec.scaling.num_workers:
        raise SpecError(
            f"scaling.use_gpu: {spec.scaling.num_workers} workers need {spec.scaling.num_workers} GPUs, "
            f"the cluster has {res.get('GPU', 0.0):g}"
        )


class _ProgressTail(BackgroundThread):
    """Tail the rank-0 progress file and render epoch / loss / metric with rich."""

    def __init__(self, path: Path, spec: TrainSpec, console) -> None:
        super().__init__()
        self.path, self.spec, self.console = path, spec, console

    def _run(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from ecomine.train.loop import val_metric_name

        watch = val_metric_name(self.spec.watch()[0])
        seen = 0
        with Progress(
            TextColumn("[bold]training[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), console=self.console, transient=False,
        ) as progress:
            task = progress.add_task("epochs", total=self.spec.optim.epochs, info="starting Ray Train workers")
            while True:
                done = self._stop.is_set()
                if self.path.exists():
                    lines = self.path.read_text().splitlines()
                    for line in lines[seen:]:
                        rec = json.loads(line)
                        if "train_loss" in rec:
                            info = f"loss {rec['train_loss']:.4f}  {watch} {rec.get(watch, float('nan')):.4f}  {rec['samples_per_s']:.0f} samples/s"
                            progress.update(task, completed=rec["epoch"], info=info)
                    seen = len(lines)
                if done:
                    break
                time.sleep(0.5)


def _trainer(spec: TrainSpec, name: str, root: str, local_run_dir: Path, progress_file: Path, callbacks: list | None,
             *, data, init, warm):
    """The run's TorchTrainer: the loop with its inputs in the object store, the scaling, and checkpoints
    ranked by the watched validation metric."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from ecomine.train.loop import train_loop_per_worker, val_metric_name

    metric, mode = spec.watch()
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "spec": spec.model_dump(mode="json"),
            "data": ray.put(data),
            "init": ray.put(init) if init is not None else None,
            "warm": ray.put(warm.state) if warm is not None else None,
            "progress_file": str(progress_file),
            "run_dir": str(local_run_dir),
        },
        scaling_config=ScalingConfig(
            num_workers=spec.scaling.num_workers,
            use_gpu=spec.scaling.use_gpu,
            resources_per_worker={"CPU": spec.scaling.cpus_per_worker, **({"GPU": 1} if spec.scaling.use_gpu else {})},
        ),
        run_config=RunConfig(
            name=name,
            storage_path=root,
            failure_config=FailureConfig(max_failures=spec.run.max_failures),
            callbacks=callbacks,
            checkpoint_config=CheckpointConfig(
                num_to_keep=2, checkpoint_score_attribute=val_metric_name(metric), checkpoint_score_order=mode
            ),
        ),
    )


def run_training(
    spec: TrainSpec,
    *,
    ray_address: str | None = None,
    console=None,
    data=None,
    callbacks: list | None = None,
    evaluate: bool = True,
) -> TrainOutcome:
    """Run a TrainSpec end to end; see the module docstring.

    `data` may pass the task's prepared data (Tune prepares it once per campaign);
    `callbacks` go to Ray Train's RunConfig (Tune's TuneReportCallback); with
    `evaluate=False` the run stops after training (Tune trials: the campaign
    evaluates and registers only its top-k).
    """
    from ecomine.train.loop import load_checkpoint_dir
    from ecomine.train.tasks import get_task

    if getattr(spec.model, "forecaster", None) == "ensemble":
        raise SpecError("model.forecaster: ensemble trains two members and fits their mixture above the training "
                        "layer: run it through `ecomine train` (ecomine.ensemble.trained.train_version)")
    booster = next((f for f in ("forecaster", "classifier") if getattr(spec.model, f, None) == "lightgbm"), None)
    if booster is not None:
        if callbacks:
            raise SpecError(f"model.{booster}: lightgbm fits without Ray Train, so a tune campaign cannot search it")
        return run_lightgbm(spec, data=data, evaluate=evaluate)
    t0 = time.perf_counter()
    task = get_task(spec.task)
    preflight(spec)
    ensure_ray(ray_address)
    check_cluster(spec)
    data = task.adapt(data, spec) if data is not None else task.prepare(spec)
    if task.num_examples(data) < spec.scaling.num_workers:
        raise SpecError(f"data: {task.num_examples(data)} training examples cannot feed {spec.scaling.num_workers} workers")
    name = run_name(spec)
    root = storage_path(spec)
    local_run_dir = Path(root) / name if not root.startswith("s3://") else Path(tempfile.mkdtemp(prefix="ecomine-run-"))
    local_run_dir.mkdir(parents=True, exist_ok=True)
    progress_file = local_run_dir / "progress.jsonl"
    init = task.driver_init(spec, data)
    warm = _warm_start(task, spec, data, init)
    trainer = _trainer(spec, name, root, local_run_dir, progress_file, callbacks, data=data, init=init, warm=warm)
    tail = _ProgressTail(progress_file, spec, console) if console is not None else contextlib.nullcontext()
    with train_env(), tail:
        result = trainer.fit()
    if result.error:
        raise result.error
    best = result.best_checkpoints[0][0] if result.best_checkpoints else result.checkpoint
    if best is None:
        raise RuntimeError(f"run {name}: training produced no checkpoint")
    # The latest checkpoint carries the whole run's history (the best one stops at its epoch).
    state = _loop_state(result.checkpoint or best)
    curve = time_to_quality(state.get("history", []), spec.watch()[0])
    (local_run_dir / "time_to_quality.json").write_text(json.dumps(curve, indent=2))
    if not evaluate:
        return TrainOutcome(
            run_name=name, results={}, history=state.get("history", []), version=None,
            registry=spec.run.registry, best_epoch=state.get("best_epoch"), seconds=time.perf_counter() - t0,
            stopped_on=state.get("stopped_on"),
        )
    model = task.build_model(spec, data, None)
    with best.as_directory() as d:
        load_checkpoint_dir(Path(d), model)
    model.eval()
    results = task.evaluate(model, data, spec)
    version = None
    if spec.run.register_model:
        version = register_trained(spec, task, model, data, results, state, name)
    return TrainOutcome(
        run_name=name, results=results, history=state.get("history", []), version=version,
        registry=spec.run.registry, best_epoch=state.get("best_epoch"), seconds=time.perf_counter() - t0,
        warm_start=warm.summary() if warm is not None else None, stopped_on=state.get("stopped_on"),
    )


def _warm_start(task, spec: TrainSpec, data, init):
    """The warm-start tensors of `spec.run.warm_start` lined up with this run's model (None: from scratch)."""
    if spec.run.warm_start is None:
        return None
    from ecomine.train.warm_start import warm_start_state

    items, tokens = task.warm_start_vocab(spec, data)
    try:
        return warm_start_state(spec.run.warm_start, task.build_model(spec, data, init), items, tokens)
    except ValueError as exc:
        raise SpecError(str(exc)) from None


def run_baseline(spec: TrainSpec, kind: str) -> TrainOutcome:
    """Fit a non-neural recommender (item_knn, most_popular, ...) on the spec's data and register it like a model.

    No Ray: fitting is one pass over the training sequences. The version is an
    ordinary recommend version (same data fingerprint, catalogue and report), so
    it serves on its own and joins ensembles (`ecomine ensemble build`).
    """
    from ecomine.models.recommend_baselines import BASELINE_KINDS, BaselineRecommender
    from ecomine.train.tasks import get_task

    if spec.task != "recommend":
        raise SpecError(f"--baseline: baselines are recommend versions; the spec's task is {spec.task!r}")
    if kind not in BASELINE_KINDS:
        raise SpecError(f"--baseline: {kind!r} is not one of {sorted(BASELINE_KINDS)}")
    t0 = time.perf_counter()
    task = get_task("recommend")
    data = task.prepare(spec)
    scorer = BASELINE_KINDS[kind](data.data.n_items + 1, pad_id=0).fit([s for s in data.data.train_sequences if len(s)])
    model = BaselineRecommender(kind, scorer)
    metric = spec.watch()[0]
    val = task.validate(model, data, spec, "cpu")
    state = {"best": val.get(metric), "best_epoch": None, "history": [{"epoch": 0, **{f"val_{k}": v for k, v in val.items()}}]}
    results = task.evaluate(model, data, spec)
    name = spec.run.name or f"baseline-{kind}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    version = None
    if spec.run.register_model:
        version = register_trained(spec, task, model, data, results, state, name, extra_tags=["baseline", f"baseline:{kind}"])
    return TrainOutcome(run_name=name, results=results, history=state["history"], version=version,
                        registry=spec.run.registry, best_epoch=None, seconds=time.perf_counter() - t0)


def run_lightgbm(spec: TrainSpec, *, data=None, evaluate: bool = True) -> TrainOutcome:
    """A demand spec with `model.forecaster: lightgbm` or a risk spec with `model.classifier: lightgbm`:
    fit on the driver, validate, evaluate, register.

    No Ray (`run_training` comes here for such a spec): the boosters fit on the same
    prepared data (demand windows, risk temporal split) the neural model would see,
    in a few boosting passes. The version is an ordinary version of its task (same data
    fingerprint and report), so it serves on its own and joins ensembles.
    """
    from ecomine.train.tasks import get_task

    t0 = time.perf_counter()
    task = get_task(spec.task)
    fit = getattr(task, "fit_lightgbm", None)
    if fit is None:
        raise SpecError(f"task {spec.task!r} has no LightGBM model")
    data = task.adapt(data, spec) if data is not None else task.prepare(spec)
    model = fit(spec, data)
    metric = spec.watch()[0]
    val = task.validate(model, data, spec, "cpu")
    state = {"best": val.get(metric), "best_epoch": None, "history": [{"epoch": 0, **{f"val_{k}": v for k, v in val.items()}}]}
    name = run_name(spec)
    version, results = None, {}
    if evaluate:
        results = task.evaluate(model, data, spec)
        if spec.run.register_model:
            version = register_trained(spec, task, model, data, results, state, name, extra_tags=["lightgbm"])
    return TrainOutcome(run_name=name, results=results, history=state["history"], version=version,
                        registry=spec.run.registry, best_epoch=None, seconds=time.perf_counter() - t0)


def best_checkpoint_state(run_dir: str | Path, metric: str, mode: str) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint folder of a finished local run with the best `val_<metric>`, and its state."""
    from ecomine.train.loop import STATE, val_metric_name

    key = val_metric_name(metric)
    best = None
    for d in sorted(Path(run_dir).glob("checkpoint_*")):
        f = d / STATE
        if not f.exists():
            continue
        state = json.loads(f.read_text())
        last = state["history"][-1] if state.get("history") else {}
        value = last.get(key)
        if value is None:
            continue
        if best is None or (value > best[0] if mode == "max" else value < best[0]):
            best = (value, d, state)
    return (best[1], best[2]) if best else None


def _loop_state(checkpoint) -> dict[str, Any]:
    from ecomine.train.loop import STATE

    with checkpoint.as_directory() as d:
        state = json.loads((Path(d) / STATE).read_text())
    state.pop("optimizer", None)
    return state


def register_trained(spec: TrainSpec, task, model, data, results, state, name: str, extra_tags: list[str] = ()) -> str:
    """Write the version folder in a temp dir and hand it to the registry (atomic there)."""
    from ecomine.registry import Registry
    from ecomine.train.reports import report_json
    from ecomine.train.profiles import write_profile

    with tempfile.TemporaryDirectory(prefix="ecomine-version-") as tmp:
        task.save(Path(tmp), model, data, spec)
        write_profile(Path(tmp), task, model, data, spec)  # profile.json: the drift reference (ecomine monitor)
        Path(tmp, "report.json").write_text(json.dumps(report_json(results), indent=2))
        Path(tmp, "history.json").write_text(json.dumps(state.get("history", []), indent=2, default=float))
        curve = time_to_quality(state.get("history", []), spec.watch()[0])
        if curve:  # beside the training curve: validation quality against minutes
            Path(tmp, "time_to_quality.json").write_text(json.dumps(curve, indent=2))
        metrics = {
            "test": task.headline(results),
            "best_epoch": state.get("best_epoch"),
            "best_validation": state.get("best"),
            "validation_metric": spec.watch()[0],
            "stopped_on": state.get("stopped_on"),
            "run": name,
        }
        mv = Registry(spec.run.registry).register(
            spec.task, tmp, spec=spec.model_dump(mode="json"), data_fingerprint=task.fingerprint(data),
            metrics=metrics, tags=[*spec.run.tags, *extra_tags, f"run:{name}"],
        )
    return mv.version
