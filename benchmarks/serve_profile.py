"""Where one POST /v1/recommend spends its time: CPU ms per request, by process and by stage.

`python benchmarks/serve_profile.py` serves one of `serve_bench.py`'s systems,
drives wrk at each concurrency and meanwhile (1) reads every process's CPU time
from /proc (HAProxy, the Python proxy, the replicas, the controller, raylet,
GCS, wrk) and (2) samples each Serve Python process with py-spy
(`pip install py-spy`; `--nonblocking`, so the app is not paused). Each stack
is given the stage of its deepest recognised frame (HTTP parsing, ASGI
middleware, pydantic, the handle hop, batch queue, left_pad, the torch forward,
softmax, top-k, metadata, logging, metrics ...), and samples become CPU ms per
answered request. `--events` profiles `POST /v1/events` instead (single events, each with its own
event_id, into local.yaml's embedded SQLite store and event log). A profile, not a test: it prints and
writes JSON, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import serve_bench as sb  # noqa: E402

# py-spy installs beside the interpreter (`pip install py-spy` into the venv), which need not be on PATH
PY_SPY = shutil.which("py-spy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}") or "py-spy"

__all__ = ["STAGES", "stage_of", "main"]

# (stage, substrings of a frame "function (path:line)"); the deepest frame that matches decides
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("torch forward (score)", ("torch/", "transformers/", "recommend.py:2", "logits (", "hidden_states (")),
    ("left_pad (numpy->torch)", ("left_pad (",)),
    ("softmax / combine", ("softmax_rows", "combine (")),
    ("top-k", ("top_k (", "popular_fill (", "argpartition", "argsort")),
    ("answer: metadata per item", ("finish_recommend", "describe (")),
    ("plan: vocab encode, filters", ("plan_recommend", "encode (", "allowed (")),
    ("live store write (ecomine.live)", ("ecomine/live/", "sqlite3", "redis/")),
    ("events: unknown items, group commit", ("ecomine/serve/live_events.py", "unknown_items (")),
    ("batch queue (serve.batch)", ("serve/batching.py",)),
    ("pydantic validation / dump", ("pydantic", "fastapi/_compat", "fastapi/dependencies", "fastapi/encoders")),
    ("JSON encode / decode", ("json/", "render (", "orjson")),
    ("ecomine ingress code", ("ecomine/serve/ingress.py", "ecomine/serve/traffic.py", "ecomine/serve/security.py",
                              "ecomine/serve/router", "ecomine/serve/colocat")),
    ("logging", ("logging/", "log_event", "logging_utils")),
    ("metrics (ray.util.metrics)", ("ray/util/metrics", "metrics_utils", "_record_metric", "request_ingress_metrics")),
    ("FastAPI / starlette routing", ("starlette/", "fastapi/routing", "fastapi/applications")),
    ("HTTP parsing (uvicorn / h11 / httptools)", ("uvicorn/", "h11/", "httptools")),
    ("handle call / router (Serve)", ("serve/handle.py", "serve/_private/router.py", "request_router/")),
    ("Ray transport (serialize, RPC, gRPC)", ("_raylet", "serialization", "grpc", "cloudpickle", "msgpack")),
    ("Serve replica / proxy plumbing", ("serve/_private/replica.py", "serve/_private/proxy", "http_util", "direct_ingress")),
    ("asyncio event loop", ("asyncio/", "uvloop")),
    ("Ray core worker / native threads", ("Worker.main_loop", "Thread.run (threading", "_event_loop (ray/serve", "_bootstrap")),
]
# a stack whose leaf is one of these is a thread waiting for work, not CPU spent
_IDLE_LEAVES = ("wait (threading.py", "_worker (concurrent/futures/thread.py:8", "get (queue.py", "select (selectors.py")


def stage_of(stack: str) -> str | None:
    """The stage of one collapsed stack (frames root;...;leaf); None for a thread waiting for work."""
    frames = stack.split(";")
    if any(frames[-1].startswith(leaf) for leaf in _IDLE_LEAVES):
        return None
    for frame in reversed(frames):
        for stage, needles in STAGES:
            if any(n in frame for n in needles):
                return stage
    return "other" if frames != [""] else "Ray core worker / native threads"


def _processes() -> dict[int, str]:
    """pid -> a short name, for Ray's processes, HAProxy and wrk."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        first = cmd[0].decode(errors="replace")
        if first.startswith("ray::"):
            out[int(entry.name)] = first[5:].split(" ")[0]
        elif any(x in first for x in ("haproxy", "raylet", "gcs_server", "wrk")) or first.endswith("uvicorn"):
            out[int(entry.name)] = Path(first).name
    return out


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def profile_point(url: str, concurrency: int, duration_s: float, bodies: Path, rate: int, out: Path,
                  gil: bool = False) -> dict[str, Any]:
    """wrk at one concurrency; CPU per process and py-spy stages per Serve Python process, per request."""
    wrk = subprocess.Popen(sb.wrk_command(url, concurrency, duration_s + 3, bodies), stdout=subprocess.PIPE, text=True)
    time.sleep(1.5)
    procs = _processes()
    before = {pid: _cpu_s(pid) for pid in procs}
    sampled = {pid: name for pid, name in procs.items() if name.startswith(("ServeReplica", "ProxyActor"))}
    spies = {
        pid: subprocess.Popen([PY_SPY, "record", "--nonblocking", "--format", "raw", "-r", str(rate), "-d", f"{duration_s:g}",
                               *(["--gil"] if gil else []),
                               "-p", str(pid), "-o", str(out / f"{pid}.txt")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for pid in sampled
    }
    t0 = time.monotonic()
    for spy in spies.values():
        spy.wait()
    window = time.monotonic() - t0
    cpu = {}
    for pid, name in procs.items():
        try:
            cpu[f"{name}[{pid}]"] = _cpu_s(pid) - before[pid]
        except OSError:
            pass
    result = sb.parse_wrk(wrk.communicate()[0])
    answered = result["rps"] * window
    stages: dict[str, dict[str, float]] = {}
    for pid, name in sampled.items():
        counts: Counter[str] = Counter()
        path = out / f"{pid}.txt"
        for line in path.read_text().splitlines() if path.exists() else []:
            stack, _, n = line.rpartition(" ")
            stage = stage_of(stack)
            if stage is not None:
                counts[stage] += int(n)
        stages[f"{name}[{pid}]"] = {s: round(c / rate * 1000 / answered, 3) for s, c in counts.most_common()}
    return {
        "concurrency": concurrency, **result, "load1": os.getloadavg()[0],
        "cpu_ms_per_request": {k: round(v * 1000 / answered, 3) for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]) if v > 0},
        "stage_ms_per_request": stages,
    }


def _print(system: str, point: dict[str, Any]) -> None:
    print(f"\n== {system} c={point['concurrency']}: {point['rps']:.1f} req/s, p50 {point['p50_ms']:.1f} ms, "
          f"p99 {point['p99_ms']:.1f} ms (load {point['load1']:.2f})")
    print("  CPU ms per request, by process:")
    for name, ms in point["cpu_ms_per_request"].items():
        print(f"    {ms:8.3f}  {name}")
    for proc, stages in point["stage_ms_per_request"].items():
        print(f"  {proc}: sampled stages, CPU ms per request")
        for stage, ms in stages.items():
            print(f"    {ms:8.3f}  {stage}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", nargs="+", default=["ecomine"], choices=[s for s in sb.SYSTEMS if s != "uvicorn"])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds sampled per point")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--items", type=int, default=4000)
    parser.add_argument("--events", action="store_true", help="profile POST /v1/events (single events, local.yaml's SQLite store)")
    parser.add_argument("--gil", action="store_true",
                        help="sample only the thread holding the GIL (py-spy --gil): a thread waiting for it is not counted")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.events and any(not s.startswith("ecomine") for s in args.systems):
        parser.error("--events profiles ecomine's own route (local.yaml's live store); choose ecomine systems only")
    from ray import serve

    os.environ.pop("ECOMINE_API_KEYS", None)
    root = Path(tempfile.mkdtemp(prefix="ecomine-serve-profile-"))
    folder, registry, vocab = sb.make_model(root, args.items)
    bodies = sb.write_bodies(root / "bodies.jsonl", vocab)
    route = "recommend"
    if args.events:
        from events_bench import event_bodies

        bodies, route = event_bodies(root / "events.jsonl", vocab, batch=1, n_events=200_000), "events"
    report: dict[str, list[dict[str, Any]]] = {}
    for system in args.systems:
        with sb.ray_serving(system in sb._UNDER_ECOMINE_ENV) as port:
            url = f"http://127.0.0.1:{port}/v1/{route}"
            serve.run(sb.serve_app(system, folder, registry), name="bench", route_prefix="/",
                      logging_config=sb.logging_config(system))
            sb.wait_http(url, bodies.read_text().splitlines()[0])
            sb.run_wrk(url, 4, 2, bodies)
            report[system] = []
            for c in args.concurrency:
                out = root / f"{system}-{c}"
                out.mkdir()
                point = profile_point(url, c, args.duration, bodies, args.rate, out, gil=args.gil)
                _print(system, point)
                report[system].append(point)
            serve.delete("bench")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
