"""Live events benchmark: POST /v1/events into the history store, and what a live history costs a recommendation.

`python benchmarks/events_bench.py` starts its own redis-server (appendonly yes, appendfsync always,
as `serve_configs/production.yaml` asks) and its own Ray, and prints, with the 1-minute load average
beside each row (a benchmark: nothing is asserted):

1. events/s accepted by `POST /v1/events` at concurrency 1 / 8 / 64 with batches of 1 and 50 events
   (wrk, every event with its own event_id), with the Redis store and with the embedded SQLite one,
   each with group commits of up to `live.commit_events` events (the default, 5000) and, with
   `--commit-events 5000,1`, one store write per call (the arm without group commits), against the
   physical floor here: a plain redis-py pipeline writing the same keys from one process
   (claim the event id with SET NX, RPUSH + LTRIM the user's list, XADD the log record), in the same run;
2. `POST /v1/recommend` by user_id at c=1: p50 / p99 for a user served from the training snapshot
   with live events off, the same with the store on, and a user whose history is all live events.

`--json PATH` writes the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from serve_bench import local_args, logging_config, make_model, ray_serving, run_wrk, wait_http  # noqa: E402

__all__ = ["event_bodies", "main"]


def event_bodies(path: Path, items: list[str], *, batch: int, n_events: int, users: int = 5000) -> Path:
    import numpy as np

    rng = np.random.default_rng(batch)
    run = uuid.uuid4().hex[:8]
    with open(path, "w") as f:
        for b in range(max(1, n_events // batch)):
            events = [{"user_id": f"u{int(rng.integers(users))}", "item_id": items[int(rng.integers(len(items)))],
                       "event": "view", "event_id": f"{run}-{b}-{k}"} for k in range(batch)]
            f.write(json.dumps({"events": events}) + "\n")
    return path


def redis_floor(url: str, items: list[str], *, batch: int, seconds: float = 5.0, users: int = 5000) -> float:
    """Events/s one process writes with a plain redis-py pipeline per batch (the same keys as the store)."""
    import numpy as np
    import redis

    r = redis.Redis.from_url(url)
    rng = np.random.default_rng(7)
    run = uuid.uuid4().hex[:8]
    done, t0, b = 0, time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        pipe = r.pipeline(transaction=False)
        for k in range(batch):
            user, item = f"floor:h:u{int(rng.integers(users))}", items[int(rng.integers(len(items)))]
            pipe.set(f"floor:e:{run}-{b}-{k}", 1, nx=True, ex=7 * 86400)
            pipe.rpush(user, json.dumps([item, "view", time.time(), None]))
            pipe.ltrim(user, -200, -1)
            pipe.xadd("floor:log", {"r": json.dumps([f"{run}-{b}-{k}", user, item, "view", time.time()])})
        pipe.execute()
        done += batch
        b += 1
    return done / (time.perf_counter() - t0)


def _users_table(path: Path, items: list[str], n: int = 1000, length: int = 20) -> Path:
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(3)
    pl.DataFrame({"user_id": [f"s{u}" for u in range(n)],
                  "items": [[items[int(i)] for i in rng.integers(0, len(items), size=length)] for _ in range(n)]}
                 ).write_parquet(path)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--concurrency", default="1,8,64")
    p.add_argument("--duration", type=float, default=6.0, help="seconds per wrk point")
    p.add_argument("--items", type=int, default=4000)
    p.add_argument("--stores", default="redis,sqlite")
    p.add_argument("--commit-events", default="5000", help="live.commit_events values to serve, one app each (1: no "
                   "group commit)")
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    from tests.redis_server import RedisServer

    os.environ.pop("ECOMINE_API_KEYS", None)
    root = Path(tempfile.mkdtemp(prefix="ecomine-events-bench-"))
    _, registry, items = make_model(root, a.items)
    users = _users_table(root / "users.parquet", items)
    concurrency = [int(c) for c in a.concurrency.split(",")]
    snap_users = root / "snap-users.jsonl"
    snap_users.write_text("".join(json.dumps({"user_id": f"s{u}", "k": 10}) + "\n" for u in range(200)))
    server = RedisServer(root / "redis").start()
    os.environ["ECOMINE_BENCH_REDIS"] = server.url
    rows: list[dict[str, Any]] = []

    def row(**kw: Any) -> None:
        kw["load1"] = round(os.getloadavg()[0], 2)
        rows.append(kw)
        print("  " + "  ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in kw.items()), flush=True)

    try:
        for batch in (1, 50):
            row(system="redis-py pipeline, 1 process", batch=batch, events_per_s=redis_floor(server.url, items, batch=batch))
        from ray import serve

        from ecomine.serve.app import build

        with ray_serving(True) as port:
            base = f"http://127.0.0.1:{port}"
            commit_caps = [int(b) for b in a.commit_events.split(",")]
            for store, cap in [(s, b) for s in a.stores.split(",") for b in commit_caps]:
                args = local_args(registry)
                args["recommend"]["users_uri"] = str(users)
                args["limits"]["max_events"] = 50
                live = {"store": store, "log_uri": str(root / f"log-{store}-{cap}"), "log_flush_s": 5.0,
                        "commit_events": cap}
                if store == "redis":
                    live.update(redis_url_env="ECOMINE_BENCH_REDIS", redis_prefix=f"bench-{uuid.uuid4().hex[:6]}")
                else:
                    live["path"] = str(root / f"history-{cap}.sqlite")
                args["live"] = live
                serve.run(build(args), name="bench", route_prefix="/", logging_config=logging_config("ecomine"))
                wait_http(f"{base}/v1/recommend", json.dumps({"user_id": "s1", "k": 10}))
                for batch in (1, 50):
                    for c in concurrency:
                        n_events = max(20_000, int(3000 * a.duration * batch ** 0.5))
                        bodies = event_bodies(root / f"events-{store}-{cap}-{batch}-{c}.jsonl", items,
                                               batch=batch, n_events=n_events)
                        got = run_wrk(f"{base}/v1/events", c, a.duration, bodies)
                        row(system=f"ecomine /v1/events ({store})", commit_events=cap, batch=batch,
                            concurrency=c, events_per_s=got["rps"] * batch, p50_ms=got["p50_ms"],
                            p99_ms=got["p99_ms"], non_2xx=got["non_2xx"])
                if store == "redis" and cap == commit_caps[0]:
                    # a recommendation with a live history (20 events each) vs the snapshot
                    live_users = root / "live-users.jsonl"
                    import httpx

                    for u in range(200):
                        httpx.post(f"{base}/v1/events", json={"events": [
                            {"user_id": f"l{u}", "item_id": items[(u * 31 + k) % len(items)], "event": "view"}
                            for k in range(20)]}, timeout=30).raise_for_status()
                    live_users.write_text("".join(json.dumps({"user_id": f"l{u}", "k": 10}) + "\n" for u in range(200)))
                    for name, bodies in (("snapshot user, store on", snap_users), ("live user (20 events)", live_users)):
                        got = run_wrk(f"{base}/v1/recommend", 1, a.duration, bodies)
                        row(system=f"recommend: {name}", concurrency=1, p50_ms=got["p50_ms"], p99_ms=got["p99_ms"],
                            rps=got["rps"])
                serve.delete("bench")
            args = local_args(registry)
            args["recommend"]["users_uri"] = str(users)
            args.pop("live", None)
            serve.run(build(args), name="bench", route_prefix="/", logging_config=logging_config("ecomine"))
            wait_http(f"{base}/v1/recommend", snap_users.read_text().splitlines()[0])
            got = run_wrk(f"{base}/v1/recommend", 1, a.duration, snap_users)
            row(system="recommend: snapshot user, live off", concurrency=1, p50_ms=got["p50_ms"], p99_ms=got["p99_ms"],
                rps=got["rps"])
            serve.delete("bench")
    finally:
        server.stop()
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
