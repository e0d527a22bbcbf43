"""Serving benchmark: ecomine's full path against what a user would write instead.

`ecomine bench serve` (or `python benchmarks/serve_bench.py`) drives closed-loop
load with `wrk` (Debian package; `apt-get install wrk`) and `serve_post.lua`
at each concurrency on POST /v1/recommend, with the same model (a random
2-layer, width-64 GPT-2 item model over `--items` items) and the same request
bodies, against:

  uvicorn        one FastAPI + uvicorn process (what a user would write instead)
  serve          a hand-written one-deployment Ray Serve app
  serve+batch    the same with @serve.batch
  ecomine        ecomine.serve.app:build, ingress -> Recommender deployment, batching on
  ecomine-nobatch  the same with max_batch_size 1
  ecomine-colocated  ingress.colocate: the Recommender runs inside the ingress replica, batching on

and prints p50 / p99 latency and requests/s per system and concurrency (a
benchmark, not a test: nothing is asserted). `--json PATH` writes the rows.
wrk runs with one thread so it does not eat the cores it measures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LUA = HERE / "serve_post.lua"
SYSTEMS = ("uvicorn", "serve", "serve+batch", "ecomine", "ecomine-nobatch", "ecomine-colocated")
BATCH = 32

__all__ = ["SYSTEMS", "run", "format_table", "parse_wrk", "main"]

UVICORN_APP = '''
import os
import numpy as np
from fastapi import FastAPI
from ecomine.models.recommend import load_recommender

model, vocab = load_recommender(os.environ["BENCH_MODEL_DIR"])
app = FastAPI()

@app.post("/v1/recommend")
def recommend(body: dict) -> dict:
    ids = vocab.encode(body["history"])
    scores = model.score([ids])[0]
    top = np.argsort(-scores)[: body.get("k", 10)]
    return {"items": [{"item_id": vocab.items[i - 1], "score": float(scores[i])} for i in top]}
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_model(root: Path, n_items: int, seed: int = 0) -> tuple[Path, Path, list[str]]:
    """A random recommend_small model: a plain folder and the same files registered in a registry."""
    import numpy as np
    import torch

    from ecomine.models.recommend import ItemVocab, SequentialRecommender, recommend_small, save_recommender
    from ecomine.registry import Registry

    torch.manual_seed(seed)
    items = [f"I{n:05d}" for n in range(1, n_items + 1)]
    model = SequentialRecommender(recommend_small(n_items)).eval()
    folder = root / "model"
    popular = [int(i) for i in np.random.default_rng(seed).permutation(np.arange(1, n_items + 1))[:100]]
    save_recommender(folder, model, ItemVocab(items=items, texts=[None] * n_items), popular=popular)
    registry = root / "registry"
    spec = {"task": "recommend", "model": {"kind": "recommend", "exclude_history": False}, "bench": True}
    Registry(registry).register("recommend", folder, spec=spec, data_fingerprint="bench", metrics={}, version="bench")
    return folder, registry, items


def write_bodies(path: Path, items: list[str], *, n: int = 256, history: int = 20, k: int = 10, seed: int = 0) -> Path:
    import numpy as np

    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        for _ in range(n):
            hist = [items[i] for i in rng.integers(0, len(items), size=history)]
            f.write(json.dumps({"history": hist, "k": k}) + "\n")
    return path


def parse_wrk(text: str) -> dict[str, float]:
    """requests/s, p50 and p99 latency (ms), and non-2xx responses from `wrk --latency` output."""

    def ms(value: str, unit: str) -> float:
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors:.*?timeout (\d+)", text)
    if not (rps and p50 and p99):
        raise RuntimeError(f"could not parse wrk output:\n{text}")
    return {
        "rps": float(rps.group(1)),
        "p50_ms": ms(*p50.groups()),
        "p99_ms": ms(*p99.groups()),
        "non_2xx": int(bad.group(1)) if bad else 0,
        "timeouts": int(errors.group(1)) if errors else 0,
    }


def run_wrk(url: str, concurrency: int, duration_s: float, bodies: Path) -> dict[str, float]:
    cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{duration_s:g}s", "--latency", "--timeout", "10s", "-s", str(LUA), url,
           "--", str(bodies)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return parse_wrk(done.stdout)


def _wait_http(url: str, body: str, timeout_s: float = 180.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=10).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer 200 within {timeout_s:g} s")
        time.sleep(0.5)


def _measure(system: str, url: str, concurrency: list[int], duration_s: float, bodies: Path) -> list[dict[str, Any]]:
    first = bodies.read_text().splitlines()[0]
    _wait_http(url, first)
    run_wrk(url, 4, 2, bodies)  # warm-up
    rows = []
    for c in concurrency:
        row = {"system": system, "concurrency": c, **run_wrk(url, c, duration_s, bodies)}
        print(f"  {system:16s} c={c:<3d} {row['rps']:8.1f} req/s  p50 {row['p50_ms']:8.1f} ms  p99 {row['p99_ms']:8.1f} ms",
              flush=True)
        rows.append(row)
    return rows


def _handwritten(folder: str, batched: bool) -> Any:
    """What a Ray user writes by hand: one deployment, FastAPI ingress, the model inside."""
    import numpy as np
    from fastapi import FastAPI
    from ray import serve

    api = FastAPI()

    @serve.deployment(ray_actor_options={"num_cpus": 1}, max_ongoing_requests=128)
    @serve.ingress(api)
    class HandWritten:
        def __init__(self, folder: str) -> None:
            from ecomine.models.recommend import load_recommender

            self.model, self.vocab = load_recommender(folder)

        @serve.batch(max_batch_size=BATCH, batch_wait_timeout_s=0.005)
        async def score(self, histories: list) -> list:
            return list(self.model.score(histories))

        @api.post("/v1/recommend")
        async def recommend(self, body: dict) -> dict:
            ids = self.vocab.encode(body["history"])
            scores = (await self.score(ids)) if batched else self.model.score([ids])[0]
            top = np.argsort(-scores)[: body.get("k", 10)]
            return {"items": [{"item_id": self.vocab.items[i - 1], "score": float(scores[i])} for i in top]}

    return HandWritten.bind(folder)


def run(
    *, concurrency: list[int] = (1, 8, 64), duration_s: float = 8.0, items: int = 4000,
    systems: list[str] = SYSTEMS, workdir: Path | None = None,
) -> list[dict[str, Any]]:
    """Run the benchmark and return one row per (system, concurrency)."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (the Debian package)")
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        raise SystemExit(f"unknown systems {sorted(unknown)}; choose from {', '.join(SYSTEMS)}")
    root = Path(workdir or tempfile.mkdtemp(prefix="ecomine-serve-bench-"))
    folder, registry, vocab = make_model(root, items)
    bodies = write_bodies(root / "bodies.jsonl", vocab)
    rows: list[dict[str, Any]] = []
    # uvicorn runs as a user would start it (torch's default threads); Ray gives each replica
    # OMP_NUM_THREADS = its num_cpus (1 here) on its own.
    env = {**os.environ, "BENCH_MODEL_DIR": str(folder), "PYTHONPATH": str(root)}

    if "uvicorn" in systems:
        (root / "bench_uvicorn_app.py").write_text(UVICORN_APP)
        port = _free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "bench_uvicorn_app:app", "--port", str(port), "--log-level", "warning"],
            cwd=root, env=env,
        )
        try:
            rows += _measure("uvicorn", f"http://127.0.0.1:{port}/v1/recommend", list(concurrency), duration_s, bodies)
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    serve_systems = [s for s in systems if s != "uvicorn"]
    if serve_systems:
        import ray
        from ray import serve

        from ecomine.serve.app import build

        # address="local": a fresh cluster, never one another `ray start` left on the machine
        ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
        port = _free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        try:
            for system in serve_systems:
                if system.startswith("ecomine"):
                    app = build({
                        "registry": str(registry),
                        "recommend": {
                            "champion": {"version": "bench"},
                            "batching": {"max_batch_size": 1 if system == "ecomine-nobatch" else BATCH,
                                         "batch_wait_timeout_s": 0.005},
                            "resources": {"num_cpus": 1, "max_ongoing_requests": 128},
                        },
                        "auth": {"api_keys_env": None},
                        "ingress": {"num_cpus": 1, "colocate": system == "ecomine-colocated"},
                    })
                else:
                    app = _handwritten(str(folder), batched=system == "serve+batch")
                serve.run(app, name="bench", route_prefix="/")
                rows += _measure(system, f"http://127.0.0.1:{port}/v1/recommend", list(concurrency), duration_s, bodies)
                serve.delete("bench")
        finally:
            serve.shutdown()
            ray.shutdown()
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table: one line per system, req/s and p50/p99 per concurrency."""
    levels = sorted({r["concurrency"] for r in rows})
    head = "| system | " + " | ".join(f"c={c} req/s | c={c} p50 ms | c={c} p99 ms" for c in levels) + " |"
    sep = "|---|" + "---|" * (3 * len(levels))
    lines = [head, sep]
    for system in dict.fromkeys(r["system"] for r in rows):
        cells = []
        for c in levels:
            row = next((r for r in rows if r["system"] == system and r["concurrency"] == c), None)
            cells += [f"{row['rps']:.0f}", f"{row['p50_ms']:.1f}", f"{row['p99_ms']:.1f}"] if row else ["-"] * 3
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of load per point")
    parser.add_argument("--items", type=int, default=4000, help="catalogue size of the model")
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    rows = run(concurrency=args.concurrency, duration_s=args.duration, items=args.items, systems=args.systems)
    print(format_table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
