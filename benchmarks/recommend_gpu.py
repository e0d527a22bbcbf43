"""The recommender on Amazon Toys on one GPU: Ray Train, bf16, samples/s and time to quality.

Beside the flow, not in it (CI never runs it): the prepared check for the day a GPU is lent.
It loads `train_configs/recommend.yaml` as a user would, swaps `data:` for the Amazon Toys
sequences (the packaged `amazon-toys` DataSpec), turns on `scaling.use_gpu` with bf16, and
runs `ecomine.train.runner.run_training` - the path `ecomine train` takes. It prints each
epoch's samples/s, validation NDCG@10 against minutes, and the test NDCG@10 of both
protocols beside item-kNN, and writes them as JSON.

Run (on the GPU machine, from the repository root, ../shared beside it):
    python benchmarks/recommend_gpu.py --out $OUT/recommend_gpu.json
    python benchmarks/recommend_gpu.py --batch-size 512 --set optim.lr=0.002   # any field
Without a GPU it refuses in one line (scaling.use_gpu needs one), unless --cpu is given.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]


def _spec(args: argparse.Namespace):
    from ecomine.specs import TrainSpec, load_spec, parse_overrides

    overrides: dict = {"data": {"kind": "spec", "spec": args.data}, **parse_overrides(args.set or [])}
    overrides.update({
        "scaling.use_gpu": not args.cpu,
        "scaling.mixed_precision": "no" if args.cpu else args.precision,
        "scaling.cpus_per_worker": args.cpus,
        "optim.batch_size": args.batch_size,
        "optim.max_minutes": args.max_minutes,
        "run.storage": str(Path(args.work) / "runs"),
        "run.registry": str(Path(args.work) / "registry"),
        "run.tags": ["benchmark", "gpu" if not args.cpu else "cpu"],
    })
    return load_spec(REPO / "train_configs" / "recommend.yaml", TrainSpec, overrides=overrides)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="amazon-toys", help="DataSpec YAML or preset (amazon-toys, amazon-sports)")
    ap.add_argument("--precision", choices=["bf16", "fp16", "no"], default="bf16")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--cpus", type=float, default=4.0, help="CPUs of the one worker (data, validation)")
    ap.add_argument("--max-minutes", type=float, default=8.0, help="training budget (the device lease is short)")
    ap.add_argument("--work", default=os.environ.get("OUT", "gpu_bench"), help="folder for runs and registry")
    ap.add_argument("--set", action="append", help="override a TrainSpec field: optim.lr=0.002")
    ap.add_argument("--cpu", action="store_true", help="run the same on CPU (to compare)")
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = ap.parse_args(argv)

    import torch

    from ecomine.specs import SpecError
    from ecomine.train.recommend_eval import MODEL_NAME
    from ecomine.train.runner import run_training

    if not args.cpu and not torch.cuda.is_available():
        print("recommend_gpu: this machine sees no GPU (run it where one is lent, or pass --cpu)", file=sys.stderr)
        return 2
    try:
        spec = _spec(args)
    except SpecError as e:
        print(f"recommend_gpu: {e}", file=sys.stderr)
        return 2
    device = "cpu" if args.cpu else torch.cuda.get_device_name(0)
    print(f"device {device}; load average {os.getloadavg()}; {spec.data.spec}; batch {spec.optim.batch_size}; "
          f"precision {spec.scaling.mixed_precision}; budget {spec.optim.max_minutes} min", flush=True)
    t0 = time.perf_counter()
    out = run_training(spec)
    wall = time.perf_counter() - t0
    metric = spec.watch()[0]
    curve = out.time_to_quality(metric)
    for h, c in zip(out.history, curve):
        print(f"epoch {h['epoch']:3d}  {h['samples_per_s']:9.0f} samples/s  {c['minutes']:6.2f} min  "
              f"val {metric} {c[f'val_{metric}']:.4f}")
    res = out.results
    figures = {
        "device": device, "load_average": os.getloadavg(), "wall_s": wall, "stopped_on": out.stopped_on,
        "best_epoch": out.best_epoch, "samples_per_s": [h["samples_per_s"] for h in out.history],
        "time_to_quality": curve,
        "test": {p: {"model": res[MODEL_NAME][p]["NDCG@10"], "item_knn": res["item_knn"][p]["NDCG@10"]}
                 for p in ("all_items", "new_items")},
    }
    for p, v in figures["test"].items():
        print(f"test NDCG@10 {p}: {v['model']:.4f} vs item-kNN {v['item_knn']:.4f} ({v['model'] / v['item_knn']:.2f}x)")
    print(f"wall {wall:.0f} s, stopped on {out.stopped_on}, best epoch {out.best_epoch}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
