"""Training throughput: the recommender loop through Ray Train (1 worker) vs plain PyTorch.

Beside the flow, not in it: prepares the data once (`ecomine.train.data`, via the task), times
the same model/optimiser steps in this process, runs the real per-worker loop
(`ecomine.train.loop` via `ecomine.train.runner.run_training`), and prints
steady-state samples/s of both and their ratio (target >= 0.90).

Run:  python benchmarks/train_throughput.py --users 2000 --items 1000 --days 365 \
          --epochs 3 --batch-size 128 --threads 2 --rounds 2
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

__all__ = [
    "ModeResult",
    "bench_spec",
    "prepare",
    "run_plain",
    "run_ray",
    "steady_state",
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
        from ecomine.train.data import prepare_recommend_data

        data = prepare_recommend_data(spec)
        return data, data
    prepared = get_task(spec.task).prepare(spec)
    return prepared, getattr(prepared, "data", prepared)


def run_plain(spec, data) -> ModeResult:
    """The loop's training steps in this process, without Ray.

    Mirrors `ecomine.train.loop.train_loop_per_worker` for one worker step by step
    (seed, threads, model config, AdamW, warm-up/schedule, grad clipping, the
    per-epoch permutation, `float(loss)` each step) so only Ray differs. Times
    the step loop of each epoch, as the real loop does; no validation.
    """
    import torch

    from ecomine.models.recommend import RecommenderConfig, SequentialRecommender, training_windows
    from ecomine.train.loop import lr_lambda

    load = os.getloadavg()
    t_wall = time.perf_counter()
    opt, bb = spec.optim, spec.model.backbone
    torch.manual_seed(opt.seed)
    torch.set_num_threads(max(1, int(spec.scaling.cpus_per_worker)))
    cfg = RecommenderConfig(
        n_items=data.n_items, hidden=bb.hidden, layers=bb.layers, heads=bb.heads, max_len=bb.max_len,
        dropout=bb.dropout, repeat=spec.model.repeat, loss=spec.model.loss, num_negatives=spec.model.num_negatives,
    )
    model = SequentialRecommender(cfg)
    inputs, targets = training_windows(data.train_sequences, bb.max_len)
    n = len(inputs)
    steps_per_epoch = max(1, math.ceil(n / opt.batch_size))
    total = steps_per_epoch * opt.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=opt.lr, weight_decay=opt.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(opt.schedule, int(opt.warmup_ratio * total), total))

    rates, losses_per_epoch = [], []
    for epoch in range(opt.epochs):
        model.train()
        t0 = time.perf_counter()
        order = np.random.default_rng(opt.seed * 1000 + epoch).permutation(n)
        losses = []
        for s in range(steps_per_epoch):
            idx = order[s * opt.batch_size : (s + 1) * opt.batch_size]
            if len(idx) == 0:
                continue
            x = torch.from_numpy(inputs[idx])
            y = torch.from_numpy(targets[idx])
            loss = model(x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if opt.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), opt.grad_clip)
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
        rates.append(n / max(time.perf_counter() - t0, 1e-9))
        losses_per_epoch.append(float(np.mean(losses)) if losses else float("nan"))
    return ModeResult(
        mode="plain", samples_per_s=rates, train_loss=losses_per_epoch, wall_s=time.perf_counter() - t_wall,
        load_before=load, extra={"windows": n, "threads": torch.get_num_threads()},
    )


def run_ray(spec, data, runner_data) -> ModeResult:
    """The real loop through `run_training` (TorchTrainer, 1 worker); Ray must be initialised.

    samples/s per epoch are what the loop reports (its step loop only); wall time
    covers everything `run_training` does: worker start-up, putting the data in
    the object store, per-epoch validation and checkpoints, the test evaluation.
    """
    from ecomine.models.recommend import training_windows
    from ecomine.train.runner import run_training

    load = os.getloadavg()
    t_wall = time.perf_counter()
    out = run_training(spec, data=runner_data)
    wall = time.perf_counter() - t_wall
    n = len(training_windows(data.train_sequences, spec.model.backbone.max_len)[0])
    return ModeResult(
        mode="ray", samples_per_s=[h["samples_per_s"] for h in out.history],
        train_loss=[h["train_loss"] for h in out.history], wall_s=wall, load_before=load,
        extra={"windows": n, "run_training_s": out.seconds},
    )


def _fmt_load(load: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


def format_table(results: list[ModeResult]) -> str:
    """One row per run (in the order run), then the pooled medians and the ratio ray/plain."""
    rows = [f"{'run':<4} {'mode':<6} {'samples/s per epoch':<34} {'median*':>8} {'steps s':>8} {'wall s':>8}  loadavg before"]
    for i, r in enumerate(results):
        per = " ".join(f"{s:7.0f}" for s in r.samples_per_s)
        rows.append(
            f"{i:<4} {r.mode:<6} {per:<34} {r.steady:8.0f} {r.step_seconds:8.1f} {r.wall_s:8.1f}  {_fmt_load(r.load_before)}"
        )
    plain = [s for r in results if r.mode == "plain" for s in (r.samples_per_s[1:] or r.samples_per_s)]
    ray = [s for r in results if r.mode == "ray" for s in (r.samples_per_s[1:] or r.samples_per_s)]
    rows.append("* median of the epochs after the first")
    if plain and ray:
        p, q = statistics.median(plain), statistics.median(ray)
        rows.append(f"pooled steady-state samples/s: plain {p:.0f} (n={len(plain)}), ray {q:.0f} (n={len(ray)})")
        verdict = "ok" if q / p >= TARGET else "MISSED"
        rows.append(f"ratio ray/plain = {q / p:.2f} (target >= {TARGET:.2f}) {verdict}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2, help="torch threads = Ray worker CPUs = ray.init(num_cpus)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds: plain,ray then ray,plain ...")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import ray

    with tempfile.TemporaryDirectory(prefix="ecomine-throughput-") as tmp:
        spec = bench_spec(
            users=args.users, items=args.items, days=args.days, epochs=args.epochs,
            batch_size=args.batch_size, threads=args.threads, seed=args.seed, storage=tmp,
        )
        t0 = time.perf_counter()
        runner_data, data = prepare(spec)
        print(f"data: {data.n_users} users, {data.n_items} items, {len(data.train_sequences)} train sequences "
              f"({time.perf_counter() - t0:.1f} s to prepare); loadavg {_fmt_load(os.getloadavg())}; "
              f"{os.cpu_count()} cores; OMP_NUM_THREADS in driver={os.environ.get('OMP_NUM_THREADS')}", flush=True)
        # Ray is up for both modes, so its idle daemons load both equally.
        ray.init(num_cpus=args.threads, include_dashboard=False, log_to_driver=False, configure_logging=False)
        results: list[ModeResult] = []
        try:
            for rnd in range(args.rounds):
                order = ("plain", "ray") if rnd % 2 == 0 else ("ray", "plain")
                for mode in order:
                    if mode == "plain":
                        r = run_plain(spec, data)
                    else:
                        r = run_ray(spec.model_copy(update={"run": spec.run.model_copy(update={"name": f"throughput-{rnd}"})}), data, runner_data)
                    results.append(r)
                    print(f"round {rnd} {mode:<5}: samples/s {[round(s) for s in r.samples_per_s]}, "
                          f"train_loss {[round(x, 4) for x in r.train_loss]}, wall {r.wall_s:.1f} s", flush=True)
        finally:
            ray.shutdown()
    print()
    print(format_table(results))
    print(f"loadavg after: {_fmt_load(os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
