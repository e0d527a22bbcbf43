"""Overload benchmark: goodput and shedding latency past what the model can hold (issue 16, point 2).

`python benchmarks/overload_bench.py` (wrapped in `flock /tmp/ecomine-heavy.lock` on shared
machines) serves `serve_configs/local.yaml`'s args (arms colocated in the ingress, under
ecomine's Ray environment, as `ecomine serve up --blocking` runs) with a recommend arm that
holds 4 requests at once, and drives closed-loop POST /v1/recommend with `wrk` at the peak
concurrency (c=4), at 4x it (c=16) and at the issue's probe (c=240), for these systems:

  serve-queue   admission off (ingress.max_in_flight: 0); the ingress takes 4 requests
                (max_ongoing_requests 4) and Serve queues 8 more (max_queued_requests 8):
                Serve's own queue limit answers the overload (the issue's setup)
  ecomine-shed-now  ecomine's admission with ingress.shed_hold_s: 0: max_in_flight derived
                from the arm (4), the ingress replica takes up to 256, so every excess
                request reaches the middleware and is refused at once, before its body
                is read (JSON 503, Retry-After)
  ecomine-shed  the same as shipped: the refusal is sent after shed_hold_s (50 ms), so
                wrk's connections, which retry at once, come back at most 20 times a second
  ecomine-default  local.yaml's args unchanged (the arm holds 64, batches of 32, admission derived:
                64 in flight): its peak is measured at c=64, and its open-loop multiples are of that

Goodput is 2xx answers per second (wrk's requests minus its non-2xx). wrk reports one latency
distribution for all answers, so a probe (one keep-alive connection, in a thread, sending the
same bodies back to back during each run past the peak; at the peak it would be a 5th
connection over the limit of 4) times answers by status: the 503 p50 / p99 below are the probe's. It prints each row with the load average after it, the ratios to the peak,
and `os.getloadavg()` at the end; nothing is asserted (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_bench import local_args, logging_config, make_model, ray_serving, run_wrk, wait_http, write_bodies  # noqa: E402

SYSTEMS = ("serve-queue", "ecomine-shed-now", "ecomine-shed", "ecomine-default")
HOLD = 4  # requests the recommend arm holds at once (the max_ongoing_requests)


def peak_concurrency(args: dict[str, Any]) -> int:
    """The closed-loop concurrency a system's capacity is measured at: what its arm (``overload_args``) holds at once."""
    return int(args["recommend"].get("resources", {}).get("max_ongoing_requests", HOLD))


def overload_args(registry: Path, system: str) -> dict[str, Any]:
    """local.yaml's args on the benchmark's registry, with an arm that holds ``HOLD`` requests
    (``ecomine-default``: as shipped)."""
    args = local_args(registry, "ecomine")
    if system == "ecomine-default":
        return args
    rec = args["recommend"]
    rec["batching"] = {"max_batch_size": HOLD, "batch_wait_timeout_s": 0.0}
    rec["resources"] = {**rec.get("resources", {}), "max_ongoing_requests": HOLD}
    ing = args.setdefault("ingress", {})
    if system == "serve-queue":
        ing.update(max_in_flight=0, max_ongoing_requests=HOLD, max_queued_requests=2 * HOLD)
    else:
        ing.update(max_ongoing_requests=256)  # max_in_flight unset: derived from the arm (HOLD)
        if system == "ecomine-shed-now":
            ing.update(shed_hold_s=0.0)
    args.setdefault("observability", {})["log_requests"] = True  # as shipped
    return args


class Probe:
    """One keep-alive connection timing each answer by status while a wrk run lasts."""

    def __init__(self, url: str, bodies: list[str]) -> None:
        self.url, self.bodies = url, bodies
        self.samples: list[tuple[int, float, bool]] = []  # status, ms, JSON with Retry-After (for 503s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import httpx

        n = 0
        with httpx.Client(timeout=15.0) as client:
            while not self._stop.is_set():
                body = self.bodies[n % len(self.bodies)]
                n += 1
                t0 = time.perf_counter()
                try:
                    r = client.post(self.url, content=body, headers={"content-type": "application/json"})
                except httpx.HTTPError:
                    self.samples.append((0, (time.perf_counter() - t0) * 1000.0, False))
                    continue
                ms = (time.perf_counter() - t0) * 1000.0
                shaped = r.headers.get("content-type", "").startswith("application/json") and "retry-after" in r.headers
                self.samples.append((r.status_code, ms, shaped))

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def quantiles(self, status: int) -> tuple[int, float | None, float | None, float]:
        import numpy as np

        ms = [m for s, m, _ in self.samples if s == status]
        shaped = [ok for s, _, ok in self.samples if s == status]
        if not ms:
            return 0, None, None, 0.0
        return len(ms), float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), sum(shaped) / len(shaped)


def measure(system: str, url: str, concurrency: list[int], duration_s: float, bodies: Path,
            peak: int = HOLD) -> list[dict[str, Any]]:
    lines = bodies.read_text().splitlines()
    wait_http(url, lines[0])
    run_wrk(url, peak, 3, bodies)  # warm-up
    rows = []
    for c in concurrency:
        probe = Probe(url, lines if c > peak else [])
        if c > peak:
            with probe:
                out = run_wrk(url, c, duration_s, bodies)
        else:
            out = run_wrk(url, c, duration_s, bodies)
        total = out["rps"] * duration_s
        n503, p50, p99, shaped = probe.quantiles(503)
        n200, ok50, ok99, _ = probe.quantiles(200)
        row = {
            "system": system, "concurrency": c, "rps": out["rps"],
            "goodput": max(0.0, total - out["non_2xx"]) / duration_s, "non_2xx": out["non_2xx"],
            "timeouts": out["timeouts"], "wrk_p50_ms": out["p50_ms"], "wrk_p99_ms": out["p99_ms"],
            "probe_503": n503, "p50_503_ms": p50, "p99_503_ms": p99, "json_retry_after": shaped,
            "probe_200": n200, "p50_200_ms": ok50, "p99_200_ms": ok99, "load": os.getloadavg(), "peak": peak,
        }
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


def open_loop_rows(system: str, url: str, capacity: float, multiples: list[float], duration_s: float,
                   bodies: Path) -> list[dict[str, Any]]:
    """The open-loop generator (benchmarks/open_loop.py, its own process) at ``multiples`` x ``capacity``."""
    import json
    import subprocess

    rows = []
    for mult in multiples:
        rate = max(1.0, mult * capacity)
        done = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("open_loop.py")), "--url", url, "--bodies", str(bodies),
             "--rate", f"{rate:.1f}", "--duration", str(duration_s)],
            capture_output=True, text=True, check=True,
        )
        row = {"system": system, "open_loop_x": mult, "capacity": capacity, **json.loads(done.stdout.splitlines()[-1]),
               "load": os.getloadavg()}
        rows.append(row)
        print(f"  {system:13s} open loop {mult:g}x ({rate:.0f}/s offered, {row['offered_per_s']:.0f}/s sent): goodput "
              f"{row['goodput']:.1f}/s = {row['goodput'] / capacity:.1%} of capacity; served p50 {_ms(row['p50_ms'])} ms "
              f"p99 {_ms(row['p99_ms'])} ms; statuses {row['statuses']}; 503 JSON+Retry-After "
              f"{'-' if row['json_retry_after'] is None else format(row['json_retry_after'], '.0%')}; generator dropped "
              f"{row['generator_dropped']} (load {' '.join(f'{x:.2f}' for x in row['load'])})", flush=True)
    return rows


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def format_row(r: dict[str, Any]) -> str:
    return (
        f"  {r['system']:13s} c={r['concurrency']:<4d} goodput {r['goodput']:7.1f}/s  all {r['rps']:8.1f}/s  "
        f"non-2xx {r['non_2xx']:6d}  timeouts {r['timeouts']:3d}  | probe 503: n={r['probe_503']:<5d} "
        f"p50 {_ms(r['p50_503_ms'])} ms p99 {_ms(r['p99_503_ms'])} ms json+retry-after {r['json_retry_after']:.0%}  "
        f"200: n={r['probe_200']:<4d} p50 {_ms(r['p50_200_ms'])} ms  "
        f"(load {' '.join(f'{x:.2f}' for x in r['load'])})"
    )


def summary(rows: list[dict[str, Any]]) -> str:
    out = ["", "ratios (goodput at c / goodput at the system's peak c: 4, or 64 for ecomine-default):"]
    for system in dict.fromkeys(r["system"] for r in rows if "concurrency" in r):
        mine = [r for r in rows if r["system"] == system and "concurrency" in r]
        at = mine[0].get("peak", HOLD) if mine else HOLD
        peak = next((r["goodput"] for r in mine if r["concurrency"] == at), None)
        for r in mine:
            if peak and r["concurrency"] != at:
                out.append(f"  {system:13s} c={r['concurrency']:<4d} {r['goodput'] / peak:6.1%} of peak "
                           f"({r['goodput']:.1f} / {peak:.1f}); 503 p99 {_ms(r['p99_503_ms'])} ms")
    out.append(f"os.getloadavg() at the end: {os.getloadavg()}")
    return "\n".join(out)


def run(*, concurrency: list[int], duration_s: float, items: int, systems: list[str],
        open_loop: list[float] | None = None) -> list[dict[str, Any]]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (the Debian package)")
    from ray import serve

    from ecomine.serve.app import build

    os.environ.pop("ECOMINE_API_KEYS", None)  # local.yaml reads keys from there; the benchmark sends none
    root = Path(tempfile.mkdtemp(prefix="ecomine-overload-bench-"))
    _, registry, vocab = make_model(root, items)
    bodies = write_bodies(root / "bodies.jsonl", vocab)
    rows: list[dict[str, Any]] = []
    with ray_serving(True) as port:
        for system in systems:
            args = overload_args(registry, system)
            serve.run(build(args), name="bench", route_prefix="/", logging_config=logging_config("ecomine"))
            url = f"http://127.0.0.1:{port}/v1/recommend"
            at = peak_concurrency(args)
            points = concurrency if at == HOLD else [at, *(c for c in concurrency if c > at)]
            mine = measure(system, url, points, duration_s, bodies, peak=at)
            rows += mine
            peak = next((r["goodput"] for r in mine if r["concurrency"] == at), None)
            if open_loop and peak:
                rows += open_loop_rows(system, url, peak, open_loop, duration_s, bodies)
            serve.delete("bench")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default=f"{HOLD},{4 * HOLD},240", help="comma-separated wrk connections")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per point")
    parser.add_argument("--items", type=int, default=4000, help="catalogue size of the random model")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated, of {', '.join(SYSTEMS)}")
    parser.add_argument("--open-loop", default="1,2,4",
                        help="comma-separated multiples of the measured capacity (goodput at the peak c) for the open-loop "
                             "generator (benchmarks/open_loop.py); empty: none")
    a = parser.parse_args(argv)
    systems = [s for s in a.systems.split(",") if s]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        raise SystemExit(f"unknown systems {sorted(unknown)}; choose from {', '.join(SYSTEMS)}")
    concurrency = [int(c) for c in a.concurrency.split(",")]
    print(f"overload_bench: {time.strftime('%Y-%m-%d %H:%M:%S')}, {os.cpu_count()} CPUs, load before "
          f"{os.getloadavg()}, c={concurrency}, {a.duration:g} s per point, arm holds {HOLD} "
          "(ecomine-default: local.yaml's, measured from its own peak)", flush=True)
    multiples = [float(m) for m in a.open_loop.split(",") if m]
    rows = run(concurrency=concurrency, duration_s=a.duration, items=a.items, systems=systems, open_loop=multiples)
    print(summary(rows), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
