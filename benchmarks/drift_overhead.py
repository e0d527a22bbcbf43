"""What drift observation costs on the serving hot path: one recommend request in process, with and without it.

    flock /tmp/ecomine-heavy.lock .venv/bin/python benchmarks/drift_overhead.py --items 4000 --requests 2000

Builds a recommend_small model over a synthetic catalogue, loads it into a ``runtime.ModelState`` with an
``ArmMonitor`` (a profile built from random histories), and times per request: plan -> score (batch 1) ->
finish, then the same plus ``ArmMonitor.recommend`` (what ``deployments._ModelServer`` adds per request).
Prints one JSON row with the median microseconds of each, the observation alone, and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=4000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--history", type=int, default=20, help="items per request history")
    args = parser.parse_args(argv)

    import torch

    from ecomine.data.drift import PROFILE_FILE, build_profile, popularity_ranks, recommend_observation
    from ecomine.models.recommend import ItemVocab, SequentialRecommender, recommend_small, save_recommender, load_recommender
    from ecomine.serve.monitor import ArmMonitor
    from ecomine.predict.answers import finish_recommend, plan_recommend
    from ecomine.predict.runtime import Member, build_state, run_jobs

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    items = [f"I{i:05d}" for i in range(1, args.items + 1)]
    model = SequentialRecommender(recommend_small(args.items)).eval()
    seqs = [rng.integers(1, args.items + 1, args.history) for _ in range(500)]
    ranks = popularity_ranks(seqs, args.items)
    obs = [recommend_observation(len(s), s, ranks, None) | {"top1_probability": 0.1} for s in seqs]
    values = {k: np.concatenate([np.atleast_1d(o[k]) for o in obs]) for k in obs[0]}
    with tempfile.TemporaryDirectory() as tmp:
        save_recommender(tmp, model, ItemVocab(items=items, texts=[None] * len(items)), popular=[1, 2, 3])
        Path(tmp, PROFILE_FILE).write_text(build_profile("recommend", values, lookups={"item_rank": ranks.tolist()}).dumps())
        member = Member("v", "v", 1.0, None, [], load_recommender(tmp), {}, Path(tmp))
        state = build_state("recommend", [member])
        monitor = ArmMonitor(state)
    requests = [{"history": [items[i - 1] for i in rng.integers(1, args.items + 1, args.history)], "k": 10}
                for _ in range(args.requests)]

    def one(req, observe: bool) -> None:
        job, context = plan_recommend(state, req)
        row = run_jobs([(state, job)])[0]
        if observe:
            monitor.recommend(len(req["history"]), job, row)
        finish_recommend(state, context, row)

    def timed(fn) -> list[float]:
        out = []
        for req in requests:
            t0 = time.perf_counter()
            fn(req)
            out.append((time.perf_counter() - t0) * 1e6)
        return out

    for req in requests[:50]:  # warm up torch and the reservoirs
        one(req, True)
    rows = {}
    for rnd in range(3):  # interleaved rounds: a load change on the shared machine hits both sides
        rows.setdefault("without_us", []).extend(timed(lambda r: one(r, False)))
        rows.setdefault("with_us", []).extend(timed(lambda r: one(r, True)))
    job_rows = [(plan_recommend(state, r)[0], run_jobs([(state, plan_recommend(state, r)[0])])[0]) for r in requests[:500]]
    t0 = time.perf_counter()
    for (job, row), req in zip(job_rows, requests):
        monitor.recommend(len(req["history"]), job, row)
    observe_us = (time.perf_counter() - t0) / len(job_rows) * 1e6
    t0 = time.perf_counter()
    report = monitor.report()
    report_ms = (time.perf_counter() - t0) * 1e3
    result = {
        "items": args.items, "history": args.history, "requests": 3 * args.requests,
        "without_us_median": round(float(np.median(rows["without_us"])), 1),
        "with_us_median": round(float(np.median(rows["with_us"])), 1),
        "observe_only_us": round(observe_us, 1),
        "report_ms": round(report_ms, 1), "window_values": {f["feature"]: f["n_live"] for f in report["features"]},
        "loadavg": " ".join(Path("/proc/loadavg").read_text().split()[:3]) if os.path.exists("/proc/loadavg") else None,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
