"""Training throughput: the recommender loop through Ray Train (1 worker) vs plain PyTorch.

Beside the flow, not in it: prepares the data once (`ecomine.train.recommend_data`, via the task), times
the same model/optimiser steps in this process, runs the real per-worker loop
(`ecomine.train.loop` via `ecomine.train.runner.run_training`), and prints
steady-state samples/s of both and their ratio (target >= 0.90).

Run:  python benchmarks/train_throughput.py --users 2000 --items 1000 --days 365 \
          --epochs 3 --batch-size 128 --threads 2 --rounds 2

Other jobs on the machine move the figures a lot: each Ray run is bracketed by plain
runs and the headline is the median of those paired ratios; the load average is
printed with every run.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ecomine.train.background import BackgroundThread

__all__ = [
    "ModeResult",
    "bench_spec",
    "prepare",
    "run_plain",
    "run_ray",
    "interleaved_check",
    "steady_state",
    "paired_ratios",
    "format_table",
    "main",
]

TARGET = 0.90


@dataclass
class ModeResult:
    """One timed run of one mode: per-epoch training-step throughput and the whole wall time."""

    mode: str  # "plain" | "ray"
    samples_per_s: list[float]
    train_loss: list[float]
    wall_s: float
    load_before: tuple[float, float, float]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def steady(self) -> float:
        return steady_state(self.samples_per_s)

    @property
    def step_seconds(self) -> float:
        """Seconds spent inside the timed training steps (windows / samples_per_s, summed)."""
        n = self.extra.get("windows", 0)
        return sum(n / s for s in self.samples_per_s if s > 0)


def steady_state(per_epoch: list[float]) -> float:
    """Median of the epochs after the first (the first carries warm-up); the only epoch if one."""
    if not per_epoch:
        return float("nan")
    return statistics.median(per_epoch[1:] if len(per_epoch) > 1 else per_epoch)


def bench_spec(
    *,
    users: int,
    items: int,
    days: int,
    epochs: int,
    batch_size: int,
    threads: int,
    seed: int = 0,
    storage: str = "runs",
    name: str | None = None,
):
    """The TrainSpec both modes share: synthetic data, recommend_small, 1 worker x `threads` CPUs.

    No early stopping (every epoch runs), no registration: the run measures training only.
    """
    from ecomine.specs import TrainSpec

    return TrainSpec.model_validate({
        "data": {"kind": "synthetic", "users": users, "items": items, "days": days, "seed": seed},
        "model": {"preset": "recommend_small"},
        "optim": {"epochs": epochs, "batch_size": batch_size, "seed": seed, "early_stopping": None},
        "scaling": {"num_workers": 1, "cpus_per_worker": threads},
        "run": {"name": name, "storage": storage, "register_model": False},
    })


def prepare(spec) -> tuple[Any, Any]:
    """Data prepared once: (what `run_training(data=...)` takes, the RecommendData inside it).

    With the task contract (`ecomine.train.tasks`) the runner takes the task's
    prepared object (RecommendData plus its windows); before it, RecommendData.
    """
    try:
        from ecomine.train.tasks import get_task
    except ModuleNotFoundError:
        from ecomine.train.recommend_data import prepare_recommend_data

        data = prepare_recommend_data(spec)
        return data, data
    prepared = get_task(spec.task).prepare(spec)
    return prepared, getattr(prepared, "data", prepared)


class _Stepper:
    """The loop's training steps on one model, in whichever process holds it.

    Mirrors `ecomine.train.loop.train_loop_per_worker` for one worker step by step
    (seed, threads, model config, AdamW, warm-up/schedule, grad clipping, the
    per-epoch permutation, `float(loss)` each step) so only Ray differs. `data`
    is RecommendData or the task's prepared object; the latter's windows are used
    as they are (in a Ray actor: read-only object-store arrays, as in the loop).
    """

    def __init__(self, spec, data) -> None:
        import torch

        from ecomine.models.recommend import RecommenderConfig, SequentialRecommender, training_windows
        from ecomine.train.loop import lr_lambda
        from ecomine.train.recommend_task import resolved_dropout

        self.spec = spec
        prepared, data = data, getattr(data, "data", data)
        opt, bb = spec.optim, spec.model.backbone
        torch.manual_seed(opt.seed)
        torch.set_num_threads(max(1, int(spec.scaling.cpus_per_worker)))
        cfg = RecommenderConfig(
            n_items=data.n_items, hidden=bb.hidden, layers=bb.layers, heads=bb.heads, max_len=bb.max_len,
            dropout=resolved_dropout(bb.dropout, data), repeat=spec.model.repeat, loss=spec.model.loss, num_negatives=spec.model.num_negatives,
        )
        self.model = SequentialRecommender(cfg)
        if hasattr(prepared, "inputs"):
            self.inputs, self.targets = prepared.inputs, prepared.targets
        else:
            self.inputs, self.targets = training_windows(data.train_sequences, bb.max_len)
        self.n = len(self.inputs)
        self.steps_per_epoch = max(1, math.ceil(self.n / opt.batch_size))
        total = self.steps_per_epoch * opt.epochs
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=opt.lr, weight_decay=opt.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(opt.schedule, int(opt.warmup_ratio * total), total)
        )

    def steps(self, epoch: int, start: int, stop: int) -> list[float]:
        """Training steps [start, stop) of `epoch`; their losses."""
        import torch

        opt = self.spec.optim
        self.model.train()
        order = np.random.default_rng(opt.seed * 1000 + epoch).permutation(self.n)
        losses = []
        for s in range(start, stop):
            idx = order[s * opt.batch_size : (s + 1) * opt.batch_size]
            if len(idx) == 0:
                continue
            x = torch.from_numpy(self.inputs[idx])
            y = torch.from_numpy(self.targets[idx])
            loss = self.model(x, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if opt.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), opt.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            losses.append(float(loss.detach()))
        return losses

    def timed_block(self, epoch: int, start: int, stop: int) -> dict[str, float]:
        """Steps [start, stop) with their samples, wall seconds and this process's CPU seconds."""
        w0, c0 = time.perf_counter(), time.process_time()
        self.steps(epoch, start, stop)
        w, c = time.perf_counter() - w0, time.process_time() - c0
        samples = min(stop * self.spec.optim.batch_size, self.n) - start * self.spec.optim.batch_size
        return {"samples": float(samples), "wall_s": w, "cpu_s": c}

    def environment(self) -> dict[str, Any]:
        import torch

        return {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "torch_threads": torch.get_num_threads(),
                "affinity": len(os.sched_getaffinity(0)), "pid": os.getpid()}


def _n_windows(spec, data) -> int:
    from ecomine.models.recommend import training_windows

    if hasattr(data, "inputs"):
        return len(data.inputs)
    return len(training_windows(getattr(data, "data", data).train_sequences, spec.model.backbone.max_len)[0])


def run_plain(spec, data) -> ModeResult:
    """The loop's training steps in this process, without Ray; times each epoch's step loop, no validation."""
    load = os.getloadavg()
    t_wall, t_cpu = time.perf_counter(), time.process_time()
    stepper = _Stepper(spec, data)
    rates, losses = [], []
    for epoch in range(spec.optim.epochs):
        t0 = time.perf_counter()
        epoch_losses = stepper.steps(epoch, 0, stepper.steps_per_epoch)
        rates.append(stepper.n / max(time.perf_counter() - t0, 1e-9))
        losses.append(float(np.mean(epoch_losses)) if epoch_losses else float("nan"))
    return ModeResult(
        mode="plain", samples_per_s=rates, train_loss=losses, wall_s=time.perf_counter() - t_wall,
        load_before=load, extra={"windows": stepper.n, "cpu_s": time.process_time() - t_cpu, **stepper.environment()},
    )


def interleaved_check(spec, data, *, blocks: int, steps_per_block: int) -> dict[str, Any]:
    """The same steps in a Ray actor (num_cpus = threads) and in this process, alternating every block.

    A diagnostic beside the real-loop comparison: blocks of a few steps each,
    taken in turn (plain, actor, actor, plain, ...), so load that changes over
    minutes hits both sides alike. Isolates what a Ray worker process itself
    costs (threads, Ray's own threads, read-only object-store arrays) from the
    Train loop around it. Ray must be initialised.
    """
    import ray

    threads = max(1, int(spec.scaling.cpus_per_worker))
    actor_cls = ray.remote(num_cpus=threads)(_Stepper)
    actor = actor_cls.remote(spec, ray.put(data))
    plain = _Stepper(spec, data)
    env = {"plain": plain.environment(), "actor": ray.get(actor.environment.remote())}
    per_epoch = plain.steps_per_epoch
    rows: list[tuple[dict[str, float], dict[str, float]]] = []
    for b in range(blocks):
        first = (b * steps_per_block) % per_epoch
        epoch = (b * steps_per_block) // per_epoch
        stop = min(first + steps_per_block, per_epoch)
        if b % 2 == 0:
            p = plain.timed_block(epoch, first, stop)
            a = ray.get(actor.timed_block.remote(epoch, first, stop))
        else:
            a = ray.get(actor.timed_block.remote(epoch, first, stop))
            p = plain.timed_block(epoch, first, stop)
        rows.append((p, a))
    ray.kill(actor)
    steady = rows[2:] if len(rows) > 4 else rows  # the first blocks carry warm-up
    rate = [(a["samples"] / a["wall_s"]) / (p["samples"] / p["wall_s"]) for p, a in steady]
    cpu = [(a["cpu_s"] / a["samples"]) / (p["cpu_s"] / p["samples"]) for p, a in steady]
    return {
        "env": env,
        "blocks": len(steady),
        "plain_samples_per_s": statistics.median(p["samples"] / p["wall_s"] for p, _ in steady),
        "actor_samples_per_s": statistics.median(a["samples"] / a["wall_s"] for _, a in steady),
        "ratio": statistics.median(rate),
        "cpu_per_sample_ratio": statistics.median(cpu),
    }


class _WorkerWatch(BackgroundThread):
    """Looks at the Ray Train worker process while it runs: CPU affinity, OS threads, CPU seconds.

    The worker is a grandchild of this driver (driver -> raylet -> worker) when
    `ray.init` started the local cluster. Polls every 2 s (a few ms each), so it
    barely touches the CPUs the worker is measured on.
    """

    def __init__(self, interval: float = 2.0) -> None:
        super().__init__()
        self.interval = interval
        self.seen: dict[str, Any] = {}

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.wait(self.interval):
            for p in me.children(recursive=True):
                try:
                    if "RayTrainWorker" not in p.name() and "RayTrainWorker" not in " ".join(p.cmdline()):
                        continue
                    cpu = p.cpu_times()
                    self.seen.update(
                        pid=p.pid,
                        affinity=len(p.cpu_affinity()),
                        os_threads=max(self.seen.get("os_threads", 0), p.num_threads()),
                        cpu_s=cpu.user + cpu.system,
                    )
                except (psutil.Error, OSError):
                    continue


def run_ray(spec, data) -> ModeResult:
    """The real loop through `run_training` (TorchTrainer, 1 worker); Ray must be initialised.

    samples/s per epoch are what the loop reports (its step loop only); wall time
    covers everything `run_training` does: worker start-up, putting the data in
    the object store, per-epoch validation and checkpoints, the test evaluation.
    """
    from ecomine.train.runner import run_training

    load = os.getloadavg()
    t_wall = time.perf_counter()
    with _WorkerWatch() as watch:
        out = run_training(spec, data=data)
    wall = time.perf_counter() - t_wall
    n = _n_windows(spec, data)
    return ModeResult(
        mode="ray", samples_per_s=[h["samples_per_s"] for h in out.history],
        train_loss=[h["train_loss"] for h in out.history], wall_s=wall, load_before=load,
        extra={"windows": n, "worker": watch.seen},
    )


def _fmt_load(load: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


def paired_ratios(results: list[ModeResult]) -> list[float]:
    """Each Ray run's steady samples/s over the mean of the plain runs right before and after it.

    Bracketing each Ray run by plain runs cancels load that drifts over minutes,
    which pooled medians do not.
    """
    out = []
    for i, r in enumerate(results):
        if r.mode != "ray":
            continue
        around = [results[j].steady for j in (i - 1, i + 1) if 0 <= j < len(results) and results[j].mode == "plain"]
        if around:
            out.append(r.steady / statistics.fmean(around))
    return out


def format_table(results: list[ModeResult]) -> str:
    """One row per run (in the order run), the pooled medians, then the ratio ray/plain."""
    rows = [f"{'run':<4} {'mode':<6} {'samples/s per epoch':<34} {'median*':>8} {'steps s':>8} {'wall s':>8}  loadavg before"]
    for i, r in enumerate(results):
        per = " ".join(f"{s:7.0f}" for s in r.samples_per_s)
        rows.append(
            f"{i:<4} {r.mode:<6} {per:<34} {r.steady:8.0f} {r.step_seconds:8.1f} {r.wall_s:8.1f}  {_fmt_load(r.load_before)}"
        )
    rows.append("* median of the epochs after the first; steps s: time inside the timed training steps")
    plain = [s for r in results if r.mode == "plain" for s in (r.samples_per_s[1:] or r.samples_per_s)]
    ray = [s for r in results if r.mode == "ray" for s in (r.samples_per_s[1:] or r.samples_per_s)]
    if not (plain and ray):
        return "\n".join(rows)
    p, q = statistics.median(plain), statistics.median(ray)
    rows.append(f"pooled steady-state samples/s: plain {p:.0f} (n={len(plain)} epochs), ray {q:.0f} (n={len(ray)} epochs); "
                f"pooled ratio {q / p:.2f}")
    # Other jobs only ever slow a run down, so the fastest steady epoch of each mode
    # is the least disturbed estimate of what it can do.
    best_p = max(plain)
    best_q = max(ray)
    rows.append(f"best steady epoch: plain {best_p:.0f}, ray {best_q:.0f} samples/s; best-of ratio {best_q / best_p:.2f}")
    pairs = paired_ratios(results)
    ratio = statistics.median(pairs) if pairs else q / p
    if pairs:
        rows.append("paired ratios (each ray run / mean of the plain runs around it): " + " ".join(f"{x:.2f}" for x in pairs))
    verdict = "ok" if ratio >= TARGET else "MISSED"
    rows.append(f"ratio ray/plain = {ratio:.2f} (target >= {TARGET:.2f}) {verdict}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2, help="torch threads = Ray worker CPUs = ray.init(num_cpus)")
    ap.add_argument("--rounds", type=int, default=2, help="Ray runs, each bracketed by plain runs: plain, ray, plain, ray, plain")
    ap.add_argument("--check-blocks", type=int, default=24, help="interleaved in-actor check: blocks per side (0: skip)")
    ap.add_argument("--check-steps", type=int, default=3, help="interleaved in-actor check: steps per block")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import ray

    with tempfile.TemporaryDirectory(prefix="ecomine-throughput-") as tmp:
        spec = bench_spec(
            users=args.users, items=args.items, days=args.days, epochs=args.epochs,
            batch_size=args.batch_size, threads=args.threads, seed=args.seed, storage=tmp,
        )
        t0 = time.perf_counter()
        data, recs = prepare(spec)
        print(f"data: {recs.n_users} users, {recs.n_items} items, {_n_windows(spec, data)} training windows "
              f"({time.perf_counter() - t0:.1f} s to prepare); {os.cpu_count()} cores; loadavg {_fmt_load(os.getloadavg())}; "
              f"OMP_NUM_THREADS in driver={os.environ.get('OMP_NUM_THREADS')}", flush=True)
        # A private local Ray (address="local": never a cluster someone else started with
        # `ray start`), up for both modes so its idle daemons load both alike.
        ray.init(address="local", num_cpus=args.threads, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        results: list[ModeResult] = []
        check = None
        try:
            for i, mode in enumerate(["plain", *["ray", "plain"] * args.rounds]):
                if mode == "plain":
                    r = run_plain(spec, data)
                    note = f"torch threads {r.extra['torch_threads']}, affinity {r.extra['affinity']} CPUs, {r.extra['cpu_s']:.1f} CPU s"
                else:
                    named = spec.model_copy(update={"run": spec.run.model_copy(update={"name": f"throughput-{i}"})})
                    r = run_ray(named, data)
                    w = r.extra["worker"]
                    note = f"Train worker affinity {w.get('affinity')} CPUs, {w.get('os_threads')} OS threads, {w.get('cpu_s', float('nan')):.1f} CPU s"
                results.append(r)
                print(f"run {i} {mode:<5}: samples/s {[round(s) for s in r.samples_per_s]}, "
                      f"train_loss {[round(x, 4) for x in r.train_loss]}, wall {r.wall_s:.1f} s; {note}; "
                      f"loadavg now {_fmt_load(os.getloadavg())}", flush=True)
            if args.check_blocks:
                check = interleaved_check(spec, data, blocks=args.check_blocks, steps_per_block=args.check_steps)
        finally:
            ray.shutdown()
    print()
    print(format_table(results))
    if check is not None:
        print(f"interleaved check (same steps in a Ray actor with num_cpus={args.threads} vs this process, "
              f"{args.check_steps} steps a block, {check['blocks']} block pairs after warm-up): "
              f"plain {check['plain_samples_per_s']:.0f} samples/s, actor {check['actor_samples_per_s']:.0f} samples/s, "
              f"paired ratio {check['ratio']:.2f}, CPU s per sample actor/plain {check['cpu_per_sample_ratio']:.2f}")
        print(f"  environments: {check['env']}")
    print(f"loadavg after: {_fmt_load(os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
