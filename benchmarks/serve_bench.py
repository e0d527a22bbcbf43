"""Serving benchmark: ecomine's shipped path against what a user would write instead.

`ecomine bench serve` (or `python benchmarks/serve_bench.py`) drives closed-loop
load with `wrk` (Debian package; `apt-get install wrk`) and `serve_post.lua`
at each concurrency on POST /v1/recommend, with the same model (a random
GPT-2 item model: `recommend_small` over `--items` items by default,
`--preset base` for 4 layers of width 256) and the same request bodies, against:

  uvicorn            one FastAPI + uvicorn process (what a user would write instead)
  serve              a hand-written one-deployment Ray Serve app, Ray as it comes
  serve+batch        the same with @serve.batch
  serve+batch@ha     the same app under ecomine's Ray environment (ecomine.serve.launch)
  ecomine            serve_configs/local.yaml's args as shipped, under ecomine's Ray environment
  ecomine-nobatch    the same with max_batch_size 1
  ecomine-wait5      the same with batch_wait_timeout_s 0.005 (an idle model waits 5 ms, as @serve.batch)
  ecomine-split      the same with ingress.colocate false: ingress -> model deployment (production's layout)
  ecomine@ray        local.yaml's args under Ray as it comes (what the environment adds)

`--members N` serves an ensemble of N members (`members:` in the champion) on
the ecomine systems instead of one version. It prints requests/s and p50 / p99
latency per system and concurrency, with the 1-minute load average read after
each point (a benchmark, not a test: nothing is asserted). `--json PATH` writes
the rows. wrk runs with one thread so it does not eat the cores it measures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LUA = HERE / "serve_post.lua"
LOCAL_YAML = HERE.parent / "serve_configs" / "local.yaml"
SYSTEMS = ("uvicorn", "serve", "serve+batch", "serve+batch@ha", "ecomine", "ecomine-nobatch", "ecomine-wait5", "ecomine-split",
           "ecomine@ray")
# which Ray environment each Serve system runs under: Ray as it comes, or ecomine.serve.launch's
_UNDER_ECOMINE_ENV = {"serve+batch@ha", "ecomine", "ecomine-nobatch", "ecomine-wait5", "ecomine-split"}
BATCH = 32

__all__ = ["SYSTEMS", "run", "format_table", "parse_wrk", "local_args", "logging_config", "make_model", "write_bodies", "main"]

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


def make_model(root: Path, n_items: int, *, preset: str = "small", members: int = 1, seed: int = 0) -> tuple[Path, Path, list[str]]:
    """Random recommend models (``recommend_<preset>``): a plain folder (the first) and all of them
    registered as versions ``bench``, ``bench-2``, ... in a registry."""
    import numpy as np
    import torch

    from ecomine.models import recommend as rec
    from ecomine.registry import Registry

    items = [f"I{n:05d}" for n in range(1, n_items + 1)]
    config = getattr(rec, f"recommend_{preset}")(n_items)
    popular = [int(i) for i in np.random.default_rng(seed).permutation(np.arange(1, n_items + 1))[:100]]
    registry = root / "registry"
    spec = {"task": "recommend", "model": {"kind": "recommend", "exclude_history": False}, "bench": True}
    folders = []
    for m in range(members):
        torch.manual_seed(seed + m)
        folder = root / f"model-{m}"
        rec.save_recommender(folder, rec.SequentialRecommender(config).eval(), rec.ItemVocab(items=items, texts=[None] * n_items),
                             popular=popular)
        Registry(registry).register("recommend", folder, spec=spec, data_fingerprint="bench", metrics={},
                                    version="bench" if m == 0 else f"bench-{m + 1}")
        folders.append(folder)
    return folders[0], registry, items


def write_bodies(path: Path, items: list[str], *, n: int = 256, history: int = 20, k: int = 10, seed: int = 0) -> Path:
    import numpy as np

    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        for _ in range(n):
            hist = [items[i] for i in rng.integers(0, len(items), size=history)]
            f.write(json.dumps({"history": hist, "k": k}) + "\n")
    return path


def local_args(registry: Path, system: str = "ecomine", members: int = 1) -> dict[str, Any]:
    """``serve_configs/local.yaml``'s ``args`` as shipped, on the benchmark's registry, varied per system."""
    from ecomine.serve.control import read_serve_config

    args = read_serve_config(LOCAL_YAML)["applications"][0]["args"]
    args["registry"] = str(registry)
    live = registry.parent / "live"  # local.yaml's live paths are relative to `serve up`: pin them here
    args["live"] = {**args.get("live", {}), "path": str(live / "history.sqlite"), "log_uri": str(live / "events")}
    rec = args["recommend"]
    # local.yaml serves the production stage; the benchmark's registry names its versions directly
    rec["champion"] = {"version": "bench"}
    if members > 1:
        rec["champion"] = {"members": [{"version": "bench" if m == 0 else f"bench-{m + 1}"} for m in range(members)]}
    if system == "ecomine-nobatch":
        rec.setdefault("batching", {})["max_batch_size"] = 1
    if system == "ecomine-wait5":  # what @serve.batch does: an idle model waits 5 ms for a fuller batch
        rec.setdefault("batching", {})["batch_wait_timeout_s"] = 0.005
    if system == "ecomine-split":
        args.setdefault("ingress", {})["colocate"] = False
    return args


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


def wrk_command(url: str, concurrency: int, duration_s: float, bodies: Path) -> list[str]:
    return ["wrk", "-t1", f"-c{concurrency}", f"-d{duration_s:g}s", "--latency", "--timeout", "10s", "-s", str(LUA), url,
            "--", str(bodies)]


def run_wrk(url: str, concurrency: int, duration_s: float, bodies: Path) -> dict[str, float]:
    done = subprocess.run(wrk_command(url, concurrency, duration_s, bodies), capture_output=True, text=True, check=True)
    return parse_wrk(done.stdout)


def wait_http(url: str, body: str, timeout_s: float = 180.0) -> None:
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
    wait_http(url, bodies.read_text().splitlines()[0])
    run_wrk(url, 4, 2, bodies)  # warm-up
    rows = []
    for c in concurrency:
        row = {"system": system, "concurrency": c, **run_wrk(url, c, duration_s, bodies), "load1": os.getloadavg()[0]}
        print(f"  {system:16s} c={c:<3d} {row['rps']:8.1f} req/s  p50 {row['p50_ms']:8.1f} ms  p99 {row['p99_ms']:8.1f} ms"
              f"  (load {row['load1']:.2f})", flush=True)
        rows.append(row)
    return rows


def handwritten(folder: str, batched: bool) -> Any:
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


@contextlib.contextmanager
def ray_serving(ecomine_env: bool) -> Iterator[int]:
    """A fresh local Ray + Serve (HTTP on a free loopback port), under ecomine's Ray environment or Ray's own."""
    import ray
    from ray import serve

    from ecomine.serve.launch import SERVE_ENV, apply_serve_env

    saved = {name: os.environ.get(name) for name in SERVE_ENV}
    if ecomine_env:
        apply_serve_env()
    else:
        for name in SERVE_ENV:
            os.environ.pop(name, None)
    # address="local": a fresh cluster, never one another `ray start` left on the machine
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    port = _free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield port
    finally:
        serve.shutdown()
        ray.shutdown()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def logging_config(system: str) -> dict[str, Any] | None:
    """The Serve logging config a system runs with: an ecomine system ecomine's own (``serve.launch.SERVE_LOGGING``,
    what every shipped serve config states: Ray's access log off, ecomine's request line on), a hand-written one
    Serve's default."""
    from ecomine.serve.launch import SERVE_LOGGING

    return dict(SERVE_LOGGING) if system.startswith("ecomine") else None


def serve_app(system: str, folder: Path, registry: Path, members: int = 1) -> Any:
    """The Serve application of one system (a hand-written one, or ecomine's builder on local.yaml's args)."""
    if system.startswith("ecomine"):
        from ecomine.serve.app import build

        return build(local_args(registry, system, members))
    return handwritten(str(folder), batched=system.startswith("serve+batch"))


def run(
    *, concurrency: list[int] = (1, 8, 64), duration_s: float = 8.0, items: int = 4000, preset: str = "small",
    members: int = 1, systems: list[str] = SYSTEMS, workdir: Path | None = None,
) -> list[dict[str, Any]]:
    """Run the benchmark and return one row per (system, concurrency)."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (the Debian package)")
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        raise SystemExit(f"unknown systems {sorted(unknown)}; choose from {', '.join(SYSTEMS)}")
    os.environ.pop("ECOMINE_API_KEYS", None)  # local.yaml reads keys from there; the benchmark sends none
    root = Path(workdir or tempfile.mkdtemp(prefix="ecomine-serve-bench-"))
    folder, registry, vocab = make_model(root, items, preset=preset, members=members)
    bodies = write_bodies(root / "bodies.jsonl", vocab)
    rows: list[dict[str, Any]] = []

    if "uvicorn" in systems:
        # uvicorn runs as a user would start it (torch's default threads)
        (root / "bench_uvicorn_app.py").write_text(UVICORN_APP)
        port = _free_port()
        env = {**os.environ, "BENCH_MODEL_DIR": str(folder), "PYTHONPATH": str(root)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "bench_uvicorn_app:app", "--port", str(port), "--log-level", "warning"],
            cwd=root, env=env,
        )
        try:
            rows += _measure("uvicorn", f"http://127.0.0.1:{port}/v1/recommend", list(concurrency), duration_s, bodies)
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    for ecomine_env in (False, True):
        group = [s for s in systems if s != "uvicorn" and (s in _UNDER_ECOMINE_ENV) == ecomine_env]
        if not group:
            continue
        from ray import serve

        with ray_serving(ecomine_env) as port:
            for system in group:
                serve.run(serve_app(system, folder, registry, members), name="bench", route_prefix="/",
                          logging_config=logging_config(system))
                rows += _measure(system, f"http://127.0.0.1:{port}/v1/recommend", list(concurrency), duration_s, bodies)
                serve.delete("bench")
    for row in rows:
        row.update(items=items, preset=preset, members=members if row["system"].startswith("ecomine") else 1)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table: one line per system, req/s, p50/p99 and the load average per concurrency."""
    levels = sorted({r["concurrency"] for r in rows})
    head = "| system | " + " | ".join(f"c={c} req/s | c={c} p50 ms | c={c} p99 ms | c={c} load" for c in levels) + " |"
    lines = [head, "|---|" + "---|" * (4 * len(levels))]
    for system in dict.fromkeys(r["system"] for r in rows):
        cells = []
        for c in levels:
            row = next((r for r in rows if r["system"] == system and r["concurrency"] == c), None)
            cells += ([f"{row['rps']:.0f}", f"{row['p50_ms']:.1f}", f"{row['p99_ms']:.1f}", f"{row.get('load1', float('nan')):.2f}"]
                      if row else ["-"] * 4)
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of load per point")
    parser.add_argument("--items", type=int, default=4000, help="catalogue size of the model")
    parser.add_argument("--preset", choices=["small", "base"], default="small", help="recommend_small | recommend_base")
    parser.add_argument("--members", type=int, default=1, help="ensemble members on the ecomine systems")
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    rows = run(concurrency=args.concurrency, duration_s=args.duration, items=args.items, preset=args.preset,
               members=args.members, systems=args.systems)
    print(format_table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
