"""What `explain: true` costs a caller (issue 15: at most 3x the plain call's p50 at c=1).

    python benchmarks/explain_cost.py [--registry demo_out/registry] [--calls 150] [--json out.json]

Deploys serve_configs/local.yaml's app (the default layout) on the production version of
each task in `--registry` (default: a tiny demo trained first into
$TMPDIR/ecomine-explain-cost-demo, about two minutes, and reused by later runs), and calls each route one request at a time over HTTP, plain and
explained alternately (so both see the same noise), after a warm-up. A second app with
`limits.max_explain_tokens: 8` measures the risk route with word attributions (the
integrated-gradient pass through the text encoder that local.yaml leaves off).
Prints p50 / p90 ms of both and their ratio, with the load average.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _bodies(registry: Path) -> dict[str, dict]:
    """One request per route on items the production versions know."""
    import random

    from ecomine.registry import Registry
    from ecomine.predict.runtime import load_state

    reg = Registry(str(registry))
    rec = load_state(reg, "recommend", [("production", 1.0)])
    dem = load_state(reg, "demand", [("production", 1.0)])
    items = list(rec.extra["vocab"].items)
    rng = random.Random(0)
    history = rng.sample(items, min(10, len(items)))
    known = [i for i, ok in zip(dem.members[0].obj.items, dem.members[0].obj.known_items(dem.members[0].obj.items)) if ok]
    lines = [{"item_id": i, "quantity": 2, "price": 2.5} for i in history[:3]]
    return {
        "recommend": {"history": history, "k": 10},
        "demand": {"item_ids": known[:1], "quantiles": [0.1, 0.5, 0.9]},
        "risk": {"orders": [{"order_id": "o1", "user_id": "u-bench", "country": "United Kingdom", "lines": lines}]},
    }


def _measure(url: str, route: str, body: dict, calls: int, warmup: int) -> dict:
    import httpx

    plain, explained = [], []
    with httpx.Client(base_url=url, timeout=120) as c:
        for n in range(warmup + calls):
            for explain, sink in ((False, plain), (True, explained)):
                t0 = time.perf_counter()
                r = c.post(f"/v1/{route}", json={**body, "explain": explain})
                ms = (time.perf_counter() - t0) * 1000
                if r.status_code != 200:
                    raise SystemExit(f"{route} explain={explain}: HTTP {r.status_code} {r.text[:300]}")
                if n >= warmup:
                    sink.append(ms)

    def q(xs: list[float], p: float) -> float:
        return round(statistics.quantiles(xs, n=100)[int(p) - 1], 2)

    p50, e50 = statistics.median(plain), statistics.median(explained)
    return {"route": route, "calls": calls, "plain_p50_ms": round(p50, 2), "plain_p90_ms": q(plain, 90),
            "explain_p50_ms": round(e50, 2), "explain_p90_ms": q(explained, 90), "ratio_p50": round(e50 / p50, 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--registry", type=Path, default=None, help="a registry with production versions of all three tasks")
    p.add_argument("--calls", type=int, default=150)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)

    import ray
    import yaml
    from ray import serve

    from ecomine.serve.app import build

    registry = args.registry
    if registry is None:
        from rich.console import Console

        from ecomine.demo.run import DemoSize, run_demo

        cache = Path(tempfile.gettempdir()) / "ecomine-explain-cost-demo"  # kept: a rerun skips the training
        registry = cache / "registry"
        if not registry.exists():
            print(f"training a tiny demo registry first, into {cache} ...", flush=True)
            run_demo(cache, size=DemoSize.tiny(), console=Console(quiet=True))
    bodies = _bodies(registry)
    base = yaml.safe_load((ROOT / "serve_configs" / "local.yaml").read_text())["applications"][0]["args"]
    base["registry"] = str(registry)
    for task in ("recommend", "demand", "risk"):
        base[task] = {**base.get(task, {}), "champion": {"version": "production"}}
        base[task].pop("users_uri", None), base[task].pop("catalogue_uri", None)
    words = json.loads(json.dumps(base))
    words["limits"] = {**words.get("limits", {}), "max_explain_tokens": 8}
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # not a stale ray_current_cluster
    from ray.serve.api import RunTarget

    port = 8765
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run_many([RunTarget(build(base), name="plain", route_prefix="/plain"),
                    RunTarget(build(words), name="words", route_prefix="/words")])
    url = f"http://127.0.0.1:{port}"
    rows = []
    try:
        for route in ("recommend", "demand", "risk"):
            rows.append(_measure(f"{url}/plain", route, bodies[route], args.calls, args.warmup))
            rows[-1]["load"] = Path("/proc/loadavg").read_text().split()[:3]
            print(json.dumps(rows[-1]), flush=True)
        rows.append({**_measure(f"{url}/words", "risk", bodies["risk"], max(20, args.calls // 5), 5),
                     "route": "risk (max_explain_tokens 8)", "load": Path("/proc/loadavg").read_text().split()[:3]})
        print(json.dumps(rows[-1]), flush=True)
    finally:
        for name in ("plain", "words"):  # then ray.shutdown takes Serve: a serve.shutdown() here would have the
            serve.delete(name)           # controller killed inside its own graceful_shutdown (a raylet error line)
        ray.shutdown()
    print(f"\n{'route (c=1, local.yaml)':<30} {'plain p50':>10} {'explain p50':>12} {'ratio':>6} {'plain p90':>10} {'explain p90':>12}  load")
    for r in rows:
        print(f"{r['route']:<30} {r['plain_p50_ms']:>10} {r['explain_p50_ms']:>12} {r['ratio_p50']:>6} "
              f"{r['plain_p90_ms']:>10} {r['explain_p90_ms']:>12}  {' '.join(r['load'])}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
