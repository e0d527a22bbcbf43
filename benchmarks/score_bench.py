"""Batch scoring throughput: `ecomine score` (Ray Data, 1 and 2 actors) vs a plain Python loop, same model, same run.

    python benchmarks/score_bench.py [--users 6000] [--batch-size 256] [--json benchmarks/results/score_bench.json]

A recommend version (recommend_small on the seeded synthetic catalogue, random weights:
throughput does not depend on them) is registered in a temp registry; every user of a
synthetic users table is scored top-10 (history cap 500) three ways: a plain loop over
`scoring.score_table` in this process (torch on every core), then `run_scoring` with
1 and 2 actors of 1 CPU each on a local Ray of 2 CPUs. rows/s counts users scored,
Ray's figures over the pipeline only (actor start, scoring, parts written; not Ray's
own start). The pool's start (actor processes, their imports, the model's load: ~10-15 s on 2 cores)
is fixed, so the ratio grows with the table: run two sizes (`--users 30000`, `--users 200000`). Prints
the figures, their ratios and `cat /proc/loadavg`; writes `--json` (default benchmarks/results/score_bench.json).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "score_bench.json"


def _loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


def _registry(root: Path, users: int, items: int) -> tuple[Path, Path]:
    import numpy as np
    import polars as pl
    import torch

    from ecomine.models.recommend import ItemVocab, SequentialRecommender, recommend_small, save_recommender
    from ecomine.registry import Registry

    rng = np.random.default_rng(0)
    vocab = [f"item-{i:05d}" for i in range(items)]
    lengths = rng.integers(1, 60, size=users)
    table = pl.DataFrame({"user_id": [f"user-{u:06d}" for u in range(users)],
                          "items": [[vocab[j] for j in rng.integers(0, items, size=n)] for n in lengths]})
    table.write_parquet(root / "user_sequences.parquet")
    torch.manual_seed(0)
    model = SequentialRecommender(recommend_small(items)).eval()
    with tempfile.TemporaryDirectory() as tmp:
        save_recommender(tmp, model, ItemVocab(items=vocab, texts=vocab), popular=list(range(1, 31)))
        Registry(root / "registry").register("recommend", tmp, spec={"task": "recommend", "bench": True},
                                             data_fingerprint="bench", metrics={}, version="bench-rec")
    return root / "registry", root / "user_sequences.parquet"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=6000)
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--json", type=Path, default=RESULTS, help="write the figures here")
    args = ap.parse_args()

    import ray

    from ecomine.score.batch import load_scorer, plan_scoring, run_scoring, score_table
    from ecomine.specs import ScoreSpec

    root = Path(tempfile.mkdtemp(prefix="ecomine-score-bench-"))
    registry, users = _registry(root, args.users, args.items)

    def spec(name: str, actors: int) -> ScoreSpec:
        return ScoreSpec.model_validate({"task": "recommend", "registry": str(registry), "version": "bench-rec",
                                         "inputs": {"uri": str(users)}, "output": str(root / name), "k": 10,
                                         "actors": actors, "num_cpus": 1, "batch_size": args.batch_size})

    figures: dict[str, dict[str, float]] = {}
    plan = plan_scoring(spec("loop", 1))
    state = load_scorer(plan.spec, plan.version)
    rows = plan.table.height
    before = _loadavg()
    t0 = time.perf_counter()
    for start in range(0, rows, args.batch_size):
        score_table(state, plan.spec, plan.table.slice(start, args.batch_size))
    loop_s = time.perf_counter() - t0
    figures["plain_loop"] = {"seconds": round(loop_s, 2), "rows_per_s": round(rows / loop_s, 1),
                             "torch_threads": __import__("torch").get_num_threads()}
    print(f"plain loop      {rows / loop_s:9.0f} rows/s  ({loop_s:.1f} s)   loadavg {_loadavg()}")

    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    for actors in (1, 2):
        outcome = run_scoring(spec(f"ray{actors}", actors))
        assert outcome.rows_out == rows
        figures[f"ray_{actors}_actor"] = {"seconds": round(outcome.seconds, 2), "rows_per_s": round(outcome.rows_per_s, 1)}
        print(f"ray {actors} actor(s)  {outcome.rows_per_s:9.0f} rows/s  ({outcome.seconds:.1f} s)   loadavg {_loadavg()}")
    ray.shutdown()
    loop = figures["plain_loop"]["rows_per_s"]
    ratios = {k: round(v["rows_per_s"] / loop, 3) for k, v in figures.items() if k != "plain_loop"}
    ratios["ray_2_vs_1_actor"] = round(figures["ray_2_actor"]["rows_per_s"] / figures["ray_1_actor"]["rows_per_s"], 3)
    after = _loadavg()
    print("ratios vs plain loop:", ratios)
    print("cat /proc/loadavg:", after)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "what": "recommend top-10 for every user of a synthetic users table; rows = users",
        "users": rows, "items": args.items, "batch_size": args.batch_size, "cpus": os.cpu_count(),
        "figures": figures, "ratios_vs_plain_loop": ratios, "loadavg_before": before, "loadavg_after": after,
        "command": "python benchmarks/score_bench.py " + " ".join(sys.argv[1:]),
    }, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
