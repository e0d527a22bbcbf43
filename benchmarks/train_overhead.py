"""What a Ray Train run costs beyond its training, on a Ray that ecomine starts against one `ray.init` starts plainly.

A one-worker `TorchTrainer` of nothing is timed `--runs` times on each Ray (started in
turn, one at a time, in this process): `ensure_ray` (ecomine's one way in: a free
dashboard port its processes are started knowing), then a plain
`ray.init(address="local")`. Train's placement-group cleaner asks the state API whether
the run's controller still lives; a worker that does not know its cluster asks whatever
/tmp/ray/ray_current_cluster names, and where that is a dead cluster (any earlier
`ray start` leaves it behind) every run waits ~12 s at its end for the query to time out.
The ensure_ray arm also runs without Train's preemption watcher (`cluster.env.ONE_NODE_ENV`, ~1 s a
run), the plain arm with it: the ratio is both. Then `--runs` pairs of tiny `ecomine train` runs
(the synthetic log, 3 epochs, nothing registered) on ecomine's Ray, what the rest of the path adds:
each with ecomine's controller poll (`cluster.env.TRAIN_POLL_S`) and with Ray's own 2 s forced,
alternating. Figures, never asserted; `--json` writes them with the load average and the commit.

Usage: python benchmarks/train_overhead.py [--runs 2] [--json benchmarks/results/train_overhead_poll.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def _noop(config) -> None:
    pass


def _bare_fits(runs: int, storage: str) -> list[float]:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    out = []
    for i in range(runs):
        t0 = time.perf_counter()
        TorchTrainer(_noop, scaling_config=ScalingConfig(num_workers=1),
                     run_config=RunConfig(name=f"noop-{i}-{time.time_ns()}", storage_path=storage)).fit()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = ap.parse_args()
    import ray

    from ecomine.cluster.session import ensure_ray
    from ecomine.cluster.env import POLL_ENV, TRAIN_POLL_S, scoped_env
    from ecomine.specs import TrainSpec
    from ecomine.train.runner import run_training

    os.environ.pop("RAY_ADDRESS", None)  # a Ray of our own each time, never a cluster the shell names
    stale = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    stale_text = stale.read_text().strip() if stale.exists() else "absent"
    load_before = os.getloadavg()
    print(f"load {load_before[0]:.2f}; {stale}: {stale_text}")
    with tempfile.TemporaryDirectory(prefix="ecomine-train-overhead-") as tmp:
        ensure_ray(local_cpus=4)
        ours = _bare_fits(args.runs, tmp)
        spec = TrainSpec.model_validate({
            "data": {"kind": "synthetic", "users": 200, "items": 60, "days": 120, "seed": 2},
            "optim": {"epochs": 3, "batch_size": 64, "early_stopping": None},
            "scaling": {"num_workers": 1, "cpus_per_worker": 1},
            "run": {"storage": tmp, "registry": str(Path(tmp) / "registry"), "register_model": False},
        })
        tiny, ray_poll = [], []
        for i in range(args.runs):  # alternating: ecomine's poll interval, then Ray's own 2 s, as a user's export would
            for arm, out in (({}, tiny), ({POLL_ENV: "2.0"}, ray_poll)):
                with scoped_env(arm, exported_wins=False):
                    t0 = time.perf_counter()
                    run_training(spec.model_copy(update={"run": spec.run.model_copy(update={"name": f"tiny-{i}-{len(out)}-{bool(arm)}"})}))
                    out.append(time.perf_counter() - t0)
        ray.shutdown()
        ray.init(address="local", num_cpus=4, include_dashboard=True, log_to_driver=False)
        plain = _bare_fits(args.runs, tmp)
        ray.shutdown()

    def fmt(xs: list[float]) -> str:
        return " / ".join(f"{x:.1f}" for x in xs) + f" s (mean {sum(xs) / len(xs):.1f})"

    print(f"TorchTrainer of nothing, Ray started by ensure_ray: {fmt(ours)}")
    print(f"TorchTrainer of nothing, plain ray.init:          {fmt(plain)}")
    print(f"ratio ensure_ray / plain: {sum(ours) / sum(plain):.2f}")
    print(f"tiny ecomine train (3 epochs, synthetic), ensure_ray, Train polling every {TRAIN_POLL_S} s: {fmt(tiny)}")
    print(f"the same with Ray's own 2 s poll ({POLL_ENV}=2.0):                    {fmt(ray_poll)}")
    print(f"ratio ecomine's poll / Ray's: {sum(tiny) / sum(ray_poll):.2f}; load {os.getloadavg()[0]:.2f}")
    if args.json:
        import subprocess

        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        args.json.write_text(json.dumps({
            "command": "python benchmarks/train_overhead.py " + " ".join(sys.argv[1:]), "commit": commit,
            "loadavg": {"before": load_before, "after": os.getloadavg()}, "stale_ray_current_cluster": stale_text,
            "torchtrainer_noop_seconds": {"ensure_ray": ours, "plain_ray_init_local": plain},
            "ratio_ensure_ray_to_plain": sum(ours) / sum(plain),
            "tiny_ecomine_train_seconds": {f"poll_{TRAIN_POLL_S}s": tiny, "poll_2s_ray_default": ray_poll},
            "ratio_ecomine_poll_to_ray_poll": sum(tiny) / sum(ray_poll),
        }, indent=1))


if __name__ == "__main__":
    main()
