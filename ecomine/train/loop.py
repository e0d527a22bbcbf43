"""The per-worker training loop that Ray Train runs (one copy per worker).

Sits in `train` between the model (`ecomine.models`) and the driver
(`ecomine.train.runner`), Made-With-ML style: step functions, this loop, the
driver. DDP via `ray.train.torch.prepare_model`; every worker reports each
epoch, rank 0 alone evaluates on the validation split and writes the
checkpoint (safetensors: weights and optimiser state; JSON: loop state).
Tune trials run this same function, so there is one training code path.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "train_loop_per_worker",
    "train_step",
    "val_metric_name",
    "save_checkpoint_dir",
    "load_checkpoint_dir",
    "lr_lambda",
    "stop_reason",
    "FaultDrill",
]

WEIGHTS = "model.safetensors"  # what validation scored and the registry gets (the average, with optim.ema_epochs)
TRAINED = "trained.safetensors"  # with optim.ema_epochs: the weights as trained, which a resumed run goes on from
OPTIMIZER = "optimizer.safetensors"
STATE = "state.json"


class FaultDrill(RuntimeError):
    """Raised once by `run.fail_once_at_epoch` to exercise worker-failure recovery."""


def val_metric_name(metric: str) -> str:
    """Spec name (`ndcg@10`, `pinball`, `pr_auc`, `loss`) -> reported key (`val_ndcg@10`)."""
    return f"val_{metric}"


def lr_lambda(schedule: str, warmup: int, total: int, scale: list[float] | None = None):
    """Multiplier on the base lr at step s: linear warm-up, then the schedule.

    `scale` (one float, changed by the loop) multiplies the result: schedule "plateau" is
    constant with the loop lowering `scale[0]` at each validation plateau.
    """
    scale = scale if scale is not None else [1.0]

    def f(step: int) -> float:
        return scale[0] * _shape(step)

    def _shape(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if schedule in ("constant", "plateau"):
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if schedule == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return f


def train_step(
    model: torch.nn.Module,
    batch: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    scheduler,
    scaler: torch.amp.GradScaler,
    params: list[torch.nn.Parameter],
    *,
    grad_clip: float | None,
    device_type: str,
    amp_dtype: torch.dtype | None,
) -> float:
    """One optimiser step on one batch (the model's forward is its loss); returns the loss.

    The whole of what an epoch repeats, so `benchmarks/train_step.py` times this
    very function against a hand-written PyTorch step.
    """
    with torch.autocast(device_type=device_type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        loss = model(**batch)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return float(loss.detach())


def stop_reason(*, plateau: bool, elapsed_s: float, epoch_s: float, budget_s: float | None) -> str | None:
    """Why training stops after this epoch: "plateau" (no validation gain for `patience` epochs), "budget"
    (another epoch as long as this one would end past `max_minutes`), or None (go on)."""
    if plateau:
        return "plateau"
    if budget_s is not None and elapsed_s + epoch_s > budget_s:
        return "budget"
    return None


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """AdamW state -> (tensors for safetensors, JSON-able rest); no pickle anywhere."""
    tensors, meta = {}, {"param_groups": state["param_groups"], "scalars": {}}
    for idx, st in state["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                meta["scalars"][f"{idx}.{key}"] = value
    return tensors, meta


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in [*tensors.items(), *meta["scalars"].items()]:
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def _frozen(model: torch.nn.Module) -> set[str]:
    """Parameters training never changes (a frozen encoder, LoRA's base weights): `build_model` recreates them."""
    return {name for name, p in model.named_parameters() if not p.requires_grad}


def save_checkpoint_dir(path: Path, model: torch.nn.Module, optimizer, loop_state: dict[str, Any],
                        averaged: torch.nn.Module | None = None) -> None:
    """`model`'s weights (or, given `averaged`, the average's as WEIGHTS and the trained ones as TRAINED),
    the optimiser's state and the loop's."""
    from safetensors.torch import save_file

    # Frozen weights are left out: a frozen MiniLM made every risk checkpoint ~90 MB of unchanged tensors.
    frozen = _frozen(model)

    def weights(m: torch.nn.Module) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().contiguous() for k, v in m.state_dict().items() if k not in frozen}

    save_file(weights(averaged if averaged is not None else model), str(path / WEIGHTS))
    if averaged is not None:
        save_file(weights(model), str(path / TRAINED))
    if optimizer is not None:
        tensors, meta = _flatten_optimizer(optimizer.state_dict())
        save_file(tensors, str(path / OPTIMIZER))
        loop_state = {**loop_state, "optimizer": meta}
    (path / STATE).write_text(json.dumps(loop_state, indent=2, default=float))


def load_checkpoint_dir(path: Path, model: torch.nn.Module, optimizer=None,
                        averaged: torch.nn.Module | None = None) -> dict[str, Any]:
    """Load WEIGHTS into `model`; a run resuming with an average (`averaged`) loads TRAINED into `model` and
    WEIGHTS into the average. Returns the loop state."""
    from safetensors.torch import load_file

    def into(m: torch.nn.Module, name: str) -> None:
        missing, unexpected = m.load_state_dict(load_file(str(path / name)), strict=False)
        if unexpected or set(missing) - _frozen(m):
            raise RuntimeError(f"checkpoint {path} does not fit the model: missing {sorted(set(missing) - _frozen(m))}, "
                               f"unexpected {sorted(unexpected)}")

    resume_average = averaged is not None and (path / TRAINED).exists()
    into(model, TRAINED if resume_average else WEIGHTS)
    if resume_average:
        into(averaged, WEIGHTS)
    state = json.loads((path / STATE).read_text())
    if optimizer is not None and (path / OPTIMIZER).exists():
        optimizer.load_state_dict(_unflatten_optimizer(load_file(str(path / OPTIMIZER)), state["optimizer"]))
    return state


def _progress(path: str | None, record: dict[str, Any]) -> None:
    """Append one JSON line the driver tails for its progress display."""
    if not path:
        return
    try:
        with open(path, "a") as f:
            f.write(json.dumps(record, default=float) + "\n")
    except OSError:
        pass  # progress is a convenience; never fail training over it


def _averaged(model: torch.nn.Module, ema_epochs: float | None, steps_per_epoch: int):
    """`optim.ema_epochs`: torch's exponential moving average of `model`'s parameters over about that many
    epochs (buffers, such as the item-token index, are copied as they are), or None."""
    if ema_epochs is None:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    decay = 1.0 - 1.0 / max(1.0, ema_epochs * steps_per_epoch)
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)


def _fault_drill(drill: int | None, epoch: int, run_dir: str) -> None:
    """`run.fail_once_at_epoch`: raise once at that epoch (a marker in the run folder keeps the retry going)."""
    if drill is None or epoch + 1 != drill:
        return
    marker = Path(run_dir) / f".fault-drill-epoch-{drill}"
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("raised once\n")
        raise FaultDrill(f"fault drill: worker raised at epoch {drill} (run.fail_once_at_epoch)")


def _judge(spec, val: dict[str, Any], metrics: dict[str, Any], state: dict[str, Any], epoch: int, *,
           started: float, epoch_t0: float) -> bool:
    """Rank 0 after validation: record the epoch's metrics, the best so far and the plateau count in
    `metrics` / `state`, lower the plateau schedule's scale, and say whether the run stops here."""
    opt = spec.optim
    metric, mode = spec.watch()
    metrics.update({f"val_{k}": v for k, v in val.items()})
    metrics.setdefault("val_loss", metrics["train_loss"])
    value = metrics.get(val_metric_name(metric))
    better = value is not None and np.isfinite(value) and (
        state["best"] is None or (value > state["best"] if mode == "max" else value < state["best"])
    )
    if better:
        state.update(best=value, best_epoch=epoch + 1, bad_epochs=0)
    else:
        state["bad_epochs"] += 1
    now = time.perf_counter()
    metrics["elapsed_s"] = now - started
    reason = stop_reason(
        plateau=opt.early_stopping is not None and state["bad_epochs"] >= opt.early_stopping.patience,
        elapsed_s=now - started, epoch_s=now - epoch_t0,
        budget_s=opt.max_minutes * 60 if opt.max_minutes is not None else None,
    )
    state.update(elapsed_s=now - started, stopped_on=reason)
    if opt.schedule == "plateau" and not better and state["bad_epochs"] % opt.plateau_patience == 0:
        state["lr_scale"] = state.get("lr_scale", 1.0) * opt.plateau_factor
    state["history"].append(metrics)
    return reason is not None


def _resume(ckpt, core: torch.nn.Module, optimizer, ema) -> dict[str, Any]:
    """The loop state to start from: a fresh one, or the checkpoint Ray Train hands a restarted worker
    (weights, optimiser and the weights' average loaded into `core`, `optimizer`, `ema`)."""
    if ckpt is None:
        return {"epoch": 0, "best": None, "best_epoch": None, "bad_epochs": 0, "history": [], "elapsed_s": 0.0,
                "stopped_on": None}
    with ckpt.as_directory() as d:
        state = load_checkpoint_dir(Path(d), core, optimizer, averaged=ema.module if ema is not None else None)
        if ema is not None and (Path(d) / TRAINED).exists():
            ema.n_averaged.fill_(1)  # the average goes on from the checkpoint's; without one it starts afresh
    state.pop("optimizer", None)
    return state


def _epoch_order(task, data, opt, epoch: int) -> np.ndarray:
    """Every example's index in this epoch's order, the same on every rank (seeded by the epoch): the task's
    own order where it has one (recommend: length buckets), else a plain shuffle."""
    rng = np.random.default_rng(opt.seed * 1000 + epoch)
    ordering = getattr(task, "epoch_order", None)
    return ordering(data, rng, opt.batch_size) if ordering is not None else rng.permutation(task.num_examples(data))


def _report(metrics: dict[str, Any], state: dict[str, Any] | None, core: torch.nn.Module, optimizer, ema) -> None:
    """Report the epoch to Ray Train, with a checkpoint of the model, optimiser and loop `state` (None: none)."""
    import ray.train

    checkpoint = None
    if state is not None:
        tmp = tempfile.mkdtemp(prefix="ecomine-ckpt-")
        save_checkpoint_dir(Path(tmp), core, optimizer, state, averaged=ema.module if ema is not None else None)
        checkpoint = ray.train.Checkpoint.from_directory(tmp)
    # Ray copies the folder to run storage before returning; its local copy (~18 MB a recommend epoch) goes then.
    ray.train.report(metrics, checkpoint=checkpoint, delete_local_checkpoint_after_upload=checkpoint is not None)


def _optimiser(core: torch.nn.Module, opt, steps_per_epoch: int):
    """(trained parameters, AdamW, its warm-up + schedule, the one-float scale the plateau schedule lowers)."""
    total = steps_per_epoch * opt.epochs
    warmup = int(opt.warmup_epochs * steps_per_epoch) if opt.warmup_epochs is not None else int(opt.warmup_ratio * total)
    params = [p for p in core.parameters() if p.requires_grad]  # frozen encoders / LoRA train a subset
    optimizer = torch.optim.AdamW(params, lr=opt.lr, weight_decay=opt.weight_decay)
    lr_scale = [1.0]  # schedule plateau: lowered at each plateau by the loop, kept in the loop state
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(opt.schedule, warmup, total, lr_scale))
    return params, optimizer, scheduler, lr_scale


def _built(task, spec, data, init, warm: dict[str, Any] | None) -> torch.nn.Module:
    """The task's model, with the champion's weights the driver lined up where the run warm-starts
    (ecomine.train.warm_start)."""
    built = task.build_model(spec, data, init)
    if warm is not None:
        built.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in warm.items()}, strict=False)
    return built


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point. `config`: spec (dict), data (ObjectRef), init (ObjectRef|None),
    warm (ObjectRef|None: a warm-start state dict), run_dir, progress_file.

    ~90 lines: the epoch loop reads and updates the model, optimiser, schedule, weights' average and loop
    state together; the steps around it (`_resume`, `_epoch_order`, `_judge`, `_report`) are helpers."""
    import ray
    import ray.train
    import ray.train.torch

    from ecomine.specs import TrainSpec
    from ecomine.train.tasks import get_task

    spec = TrainSpec.model_validate(config["spec"])
    task = get_task(spec.task)
    data, init, warm = (ray.get(v) if isinstance(v, ray.ObjectRef) else v
                        for v in (config["data"], config.get("init"), config.get("warm")))
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    pg = ray.util.get_current_placement_group()
    if rank == 0 and pg is not None:
        # who holds this run's CPUs: a campaign frees them when Tune stops the trial (tuning._FreeStoppedTrials)
        _progress(config.get("progress_file"), {"placement_group": pg.id.hex()})
    opt = spec.optim
    torch.manual_seed(opt.seed)
    torch.set_num_threads(max(1, int(spec.scaling.cpus_per_worker)))
    device = ray.train.torch.get_device()
    model = ray.train.torch.prepare_model(_built(task, spec, data, init, warm))
    core = model.module if hasattr(model, "module") else model

    n_examples = task.num_examples(data)
    per_rank = n_examples // world  # equal step counts on every rank keep DDP in lock-step
    steps_per_epoch = max(1, math.ceil(per_rank / opt.batch_size))
    params, optimizer, scheduler, lr_scale = _optimiser(core, opt, steps_per_epoch)
    ema = _averaged(core, opt.ema_epochs, steps_per_epoch)
    use_amp = spec.scaling.use_gpu and spec.scaling.mixed_precision != "no"
    amp_dtype = torch.bfloat16 if spec.scaling.mixed_precision == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    def step(batch: dict[str, Any]) -> float:
        loss = train_step(model, batch, optimizer, scheduler, scaler, params, grad_clip=opt.grad_clip,
                          device_type=device.type, amp_dtype=amp_dtype if use_amp else None)
        if ema is not None:
            ema.update_parameters(core)
        return loss

    state = _resume(ray.train.get_checkpoint(), core, optimizer, ema)
    scheduler.last_epoch = state["epoch"] * steps_per_epoch
    lr_scale[0] = state.get("lr_scale", 1.0)

    started = time.perf_counter() - state.get("elapsed_s", 0.0)  # a resumed run counts the time before the failure
    for epoch in range(state["epoch"], opt.epochs):
        epoch_t0 = time.perf_counter()
        if rank == 0:
            _fault_drill(spec.run.fail_once_at_epoch, epoch, config["run_dir"])
        model.train()
        t0 = time.perf_counter()
        order = _epoch_order(task, data, opt, epoch)[rank * per_rank : (rank + 1) * per_rank]
        losses = []
        for s in range(steps_per_epoch):
            idx = order[s * opt.batch_size : (s + 1) * opt.batch_size]
            if len(idx) > 0:  # through the DDP wrapper, so gradients are all-reduced
                losses.append(step(task.batch(data, idx, device)))
        train_seconds = time.perf_counter() - t0
        metrics: dict[str, Any] = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else float("nan"),
                                   "samples_per_s": len(order) / max(train_seconds, 1e-9),
                                   "lr": scheduler.get_last_lr()[0]}
        stop = False
        scored = ema.module if ema is not None else core  # what validation scores and the checkpoint keeps
        if rank == 0:
            scored.eval()
            with torch.inference_mode():
                val = task.validate(scored, data, spec, device)
            stop = _judge(spec, val, metrics, state, epoch, started=started, epoch_t0=epoch_t0)
            _progress(config.get("progress_file"), metrics)
        state["epoch"] = epoch + 1
        if world > 1:  # rank 0 decided: every rank stops (and lowers its rate) at the same epoch
            flag = torch.tensor([1.0 if stop else 0.0, state.get("lr_scale", 1.0)], device=device)
            torch.distributed.broadcast(flag, src=0)
            stop, state["lr_scale"] = bool(flag[0].item()), float(flag[1].item())
        lr_scale[0] = state.get("lr_scale", 1.0)
        if rank == 0 and not stop and epoch + 1 == opt.epochs:
            state["stopped_on"] = "epochs"
        last = stop or epoch + 1 == opt.epochs
        metrics["stopped_early"] = stop and epoch + 1 < opt.epochs
        if rank == 0 and last:
            metrics["stopped_on"] = state["stopped_on"]  # in the history the checkpoint below carries
        keep = rank == 0 and ((epoch + 1) % spec.run.checkpoint_every == 0 or last)
        _report(metrics, state if keep else None, core, optimizer, ema)
        if stop:
            break
    if rank == 0:
        _progress(config.get("progress_file"), {"done": True, "epoch": state["epoch"]})
