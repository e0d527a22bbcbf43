"""Autoscaling, exercised: the recommend deployment grows 1 -> 2 replicas under sustained load
and shrinks back to 1 when the load falls away, with no failed request across either move.

`python benchmarks/autoscale_bench.py` starts a fresh local Ray + Serve under ecomine's Ray
environment (`serve_bench.ray_serving`), serves `serve_configs/local.yaml`'s args in the split
layout (`ingress.colocate: false`, so the recommend model is a deployment of its own) with

    recommend.resources.autoscaling_config: {min_replicas: 1, max_replicas: 2, target_ongoing_requests: T,
                                             upscale_delay_s: U, downscale_delay_s: D}

and drives closed-loop load from client threads (`ClosedLoop`: every answer that is not a 200,
and every transport error, is a failure). `exercise` runs the phases:

  1. sustained load at `--concurrency` on 1 replica: goodput *before* (req/s of 200s);
  2. the moment Serve reports 2 RUNNING replicas: seconds to scale up (from the load's start);
  3. `--after` seconds more at the same load on 2 replicas: goodput *after* (the ratio is the figure);
  4. the load drops to a trickle (1 client): seconds until Serve reports 1 replica again.

The model is `recommend_base` over `--items` items (4 layers, width 256, 20,000 items by
default: compute dominates, so a second replica has something to add); `--preset small` for
the light one. It prints one line per phase and a summary with the 1-minute load average,
`--json PATH` writes it. A benchmark, not a test; `tests/integration/serve/test_autoscaling.py`
runs `exercise` bounded, on the small model, against the test session's Serve.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

__all__ = ["ClosedLoop", "running_replicas", "exercise", "autoscaled_args", "main"]


class ClosedLoop:
    """Client threads, each posting the next body as soon as its last answer came back.

    `resize(n)` grows or shrinks the number of live clients while the load runs; every
    completion is kept as `(time, ok, seconds)` so any window can be read afterwards."""

    def __init__(self, url: str, bodies: list[str], *, timeout_s: float = 30.0) -> None:
        self.url, self.bodies, self.timeout_s = url, bodies, timeout_s
        self.done: list[tuple[float, bool, float]] = []
        self.errors: list[str] = []
        self.refused: list[tuple[int, str, str | None]] = []  # (status, content-type, Retry-After) of each non-200
        self._lock = threading.Lock()
        self._threads: list[tuple[threading.Thread, threading.Event]] = []

    def _client(self, stop: threading.Event, seed: int) -> None:
        import httpx

        headers = {"content-type": "application/json"}
        i = seed
        with httpx.Client(timeout=self.timeout_s) as client:
            while not stop.is_set():
                body = self.bodies[i % len(self.bodies)]
                i += 7
                t0 = time.monotonic()
                try:
                    r = client.post(self.url, content=body, headers=headers)
                    ok, why = r.status_code == 200, f"{r.status_code} {r.text[:200]}"
                    answer = (r.status_code, r.headers.get("content-type", ""), r.headers.get("retry-after"))
                except httpx.HTTPError as exc:
                    ok, why, answer = False, repr(exc), None
                t1 = time.monotonic()
                with self._lock:
                    self.done.append((t1, ok, t1 - t0))
                    if not ok:
                        self.errors.append(why)
                        if answer is not None:
                            self.refused.append(answer)

    def resize(self, n: int) -> None:
        while len(self._threads) > n:
            thread, stop = self._threads.pop()
            stop.set()
            thread.join(timeout=self.timeout_s + 5)
        while len(self._threads) < n:
            stop = threading.Event()
            thread = threading.Thread(target=self._client, args=(stop, len(self._threads)), daemon=True)
            thread.start()
            self._threads.append((thread, stop))

    def stop(self) -> None:
        self.resize(0)

    def window(self, t0: float, t1: float) -> dict[str, float]:
        """Goodput (200s per second), failures and p50 latency of the answers completed in [t0, t1)."""
        import numpy as np

        with self._lock:
            rows = [(ok, s) for t, ok, s in self.done if t0 <= t < t1]
        ok = [s for good, s in rows if good]
        span = max(t1 - t0, 1e-9)
        return {"seconds": round(span, 2), "ok": len(ok), "failed": len(rows) - len(ok),
                "goodput_rps": round(len(ok) / span, 2),
                "p50_ms": round(float(np.median(ok)) * 1e3, 1) if ok else float("nan")}

    @property
    def failed(self) -> int:
        with self._lock:
            return sum(1 for _, ok, _ in self.done if not ok)


def running_replicas(app: str, deployment: str) -> int:
    """RUNNING replicas of one deployment, as Serve's controller reports them."""
    from ray import serve

    status = serve.status().applications.get(app)
    if status is None or deployment not in status.deployments:
        return 0
    states = status.deployments[deployment].replica_states
    return int(states.get("RUNNING", 0))


def _wait_replicas(app: str, deployment: str, want: int, timeout_s: float, poll_s: float = 0.25) -> float | None:
    """Seconds until `want` replicas run (None: not within `timeout_s`)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if running_replicas(app, deployment) == want:
            return time.monotonic() - t0
        time.sleep(poll_s)
    return None


def exercise(url: str, app: str, deployment: str, bodies: list[str], *, concurrency: int = 8, after_s: float = 20.0,
             up_timeout_s: float = 120.0, down_timeout_s: float = 120.0, log: Any = print) -> dict[str, Any]:
    """The four phases of the module docstring against a running app; returns the figures."""
    if running_replicas(app, deployment) != 1:
        raise RuntimeError(f"{app}/{deployment}: expected 1 running replica before the load, "
                           f"got {running_replicas(app, deployment)}")
    load = ClosedLoop(url, bodies)
    t_start = time.monotonic()
    load.resize(concurrency)
    try:
        up = _wait_replicas(app, deployment, 2, up_timeout_s)
        t_up = time.monotonic()
        # before: from 2 s into the load (connections open, batches formed) until the second replica ran
        before = load.window(t_start + min(2.0, (t_up - t_start) / 2), t_up)
        log(f"  1 replica, c={concurrency}: {before['goodput_rps']:.1f} req/s, p50 {before['p50_ms']:.1f} ms; "
            f"scaled up after {up if up is None else round(up, 1)} s")
        if up is None:
            return {"scale_up_s": None, "before": before, "failed": load.failed, "errors": load.errors[:5]}
        time.sleep(after_s)
        after = load.window(t_up + 1.0, time.monotonic())  # 1 s for the handle to route to the new replica
        log(f"  2 replicas, c={concurrency}: {after['goodput_rps']:.1f} req/s, p50 {after['p50_ms']:.1f} ms "
            f"({after['goodput_rps'] / max(before['goodput_rps'], 1e-9):.2f}x)")
        load.resize(1)
        t_trickle = time.monotonic()
        down = _wait_replicas(app, deployment, 1, down_timeout_s)
        log(f"  trickle (c=1): back to 1 replica after {down if down is None else round(down, 1)} s")
        time.sleep(2.0)  # requests in flight across the removal still count
    finally:
        load.stop()
    return {
        "concurrency": concurrency, "scale_up_s": round(up, 2), "scale_down_s": None if down is None else round(down, 2),
        "before": before, "after": after, "goodput_ratio": round(after["goodput_rps"] / max(before["goodput_rps"], 1e-9), 3),
        "trickle": load.window(t_trickle, time.monotonic()), "requests": len(load.done), "failed": load.failed,
        "errors": load.errors[:5],
    }


def autoscaled_args(registry: Path, *, target: float, upscale_delay_s: float, downscale_delay_s: float) -> dict[str, Any]:
    """local.yaml's args, split layout, autoscaling 1..2 on the recommend deployment."""
    import serve_bench as sb

    args = sb.local_args(registry, "ecomine-split")
    res = args["recommend"].setdefault("resources", {})
    res.pop("num_replicas", None)
    res["autoscaling_config"] = {
        "min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": target,
        "upscale_delay_s": upscale_delay_s, "downscale_delay_s": downscale_delay_s,
        "metrics_interval_s": 1.0, "look_back_period_s": 5.0,
    }
    return args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--preset", choices=["small", "base"], default="base")
    parser.add_argument("--target", type=float, default=2.0, help="target_ongoing_requests per replica")
    parser.add_argument("--upscale-delay", type=float, default=10.0)
    parser.add_argument("--downscale-delay", type=float, default=15.0)
    parser.add_argument("--after", type=float, default=20.0, help="seconds of load measured on 2 replicas")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import serve_bench as sb
    from ray import serve

    from ecomine.serve.app import build
    from ecomine.serve.config import deployment_name

    os.environ.pop("ECOMINE_API_KEYS", None)
    root = Path(tempfile.mkdtemp(prefix="ecomine-autoscale-bench-"))
    _, registry, items = sb.make_model(root, args.items, preset=args.preset)
    bodies = sb.write_bodies(root / "bodies.jsonl", items).read_text().splitlines()
    app_args = autoscaled_args(registry, target=args.target, upscale_delay_s=args.upscale_delay,
                               downscale_delay_s=args.downscale_delay)
    with sb.ray_serving(ecomine_env=True) as port:
        serve.run(build(app_args), name="bench", route_prefix="/", logging_config=sb.logging_config("ecomine"))
        url = f"http://127.0.0.1:{port}/v1/recommend"
        sb.wait_http(url, bodies[0])
        print(f"recommend_{args.preset} over {args.items} items, autoscaling 1..2, target_ongoing_requests "
              f"{args.target:g}, upscale_delay_s {args.upscale_delay:g}, downscale_delay_s {args.downscale_delay:g}")
        out = exercise(url, "bench", deployment_name("recommend", "champion"), bodies,
                       concurrency=args.concurrency, after_s=args.after)
        serve.delete("bench")
    out.update(preset=args.preset, items=args.items, target=args.target, upscale_delay_s=args.upscale_delay,
               downscale_delay_s=args.downscale_delay, load1=os.getloadavg()[0], cores=os.cpu_count())
    print(f"scale up {out['scale_up_s']} s, down {out.get('scale_down_s')} s; goodput {out['before']['goodput_rps']} -> "
          f"{out.get('after', {}).get('goodput_rps')} req/s ({out.get('goodput_ratio')}x); failed "
          f"{out['failed']} of {out.get('requests')}; load {out['load1']:.2f} on {out['cores']} cores")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
    return 0 if out["failed"] == 0 and out.get("scale_down_s") is not None else 1


if __name__ == "__main__":
    sys.exit(main())
