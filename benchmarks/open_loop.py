"""An open-loop HTTP load generator: requests arrive at a fixed rate whatever the server does.

`python benchmarks/open_loop.py --url http://127.0.0.1:8000/v1/recommend --bodies bodies.jsonl --rate 600
--duration 10` prints one JSON line: offered and achieved rate, goodput (2xx/s), served latency p50 / p99
(from each request's *scheduled* arrival, so time spent waiting for a connection counts), the status
counts, and the share of 503s that are ecomine's JSON with `Retry-After`. `overload_bench.py --open-loop`
runs it at multiples of the measured capacity.

wrk is closed-loop (each connection waits for its answer before sending again), so past capacity it
slows down with the server and hides queueing; wrk2 (the fixed-rate fork) is not packaged in Debian.
This is asyncio streams with a keep-alive connection pool (up to `--max-connections`; an arrival that
finds none free and the pool full is counted as `generator_dropped`, never silently delayed), a
minimal HTTP/1.1 client written here because httpx's per-request cost on one core would cap the
offered rate below what the server takes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from urllib.parse import urlparse

__all__ = ["open_loop"]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed before a status line")
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        key, _, value = line.decode("latin-1").partition(":")
        headers[key.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readline()).strip() or b"0", 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers


async def _generate(url: str, bodies: list[bytes], rate: float, duration_s: float, max_connections: int) -> dict:
    parsed = urlparse(url)
    host, port, path = parsed.hostname or "127.0.0.1", parsed.port or 80, parsed.path or "/"
    loop = asyncio.get_running_loop()
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    state = {"open": 0, "dropped": 0}
    samples: list[tuple[int, float, bool]] = []  # status, ms from the scheduled arrival, JSON + Retry-After

    async def one(body: bytes, scheduled: float) -> None:
        if idle:
            reader, writer = idle.pop()
        elif state["open"] < max_connections:
            state["open"] += 1
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                state["open"] -= 1
                samples.append((0, (loop.time() - scheduled) * 1000.0, False))
                return
        else:
            state["dropped"] += 1
            return
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        try:
            writer.write(head + body)
            status, headers = await _read_response(reader)
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
            writer.close()
            state["open"] -= 1
            samples.append((0, (loop.time() - scheduled) * 1000.0, False))
            return
        shaped = headers.get("content-type", "").startswith("application/json") and "retry-after" in headers
        samples.append((status, (loop.time() - scheduled) * 1000.0, shaped))
        if headers.get("connection", "").lower() == "close":
            writer.close()
            state["open"] -= 1
        else:
            idle.append((reader, writer))

    tasks: set[asyncio.Task] = set()
    start = loop.time() + 0.05
    n = 0
    while True:
        scheduled = start + n / rate
        if scheduled >= start + duration_s:
            break
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(bodies[n % len(bodies)], scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        n += 1
    sent_for = loop.time() - start
    if tasks:
        await asyncio.wait(tasks, timeout=30.0)
    for _, writer in idle:
        writer.close()
    return _summary(samples, n, rate, duration_s, sent_for, state["dropped"], len(tasks))


def _summary(samples, offered: int, rate: float, duration_s: float, sent_for: float, dropped: int, unfinished: int) -> dict:
    import numpy as np

    ok = [ms for status, ms, _ in samples if 200 <= status < 300]
    refused = [shaped for status, _, shaped in samples if status == 503]
    statuses: dict[str, int] = {}
    for status, _, _ in samples:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {
        "rate": rate, "offered": offered, "offered_per_s": offered / max(sent_for, 1e-9), "duration_s": duration_s,
        "goodput": len(ok) / duration_s, "p50_ms": float(np.percentile(ok, 50)) if ok else None,
        "p99_ms": float(np.percentile(ok, 99)) if ok else None, "statuses": statuses,
        "json_retry_after": (sum(refused) / len(refused)) if refused else None,
        "generator_dropped": dropped, "unfinished": unfinished,
    }


def open_loop(url: str, bodies: list[str], rate: float, duration_s: float, max_connections: int = 1024) -> dict:
    """Send ``rate`` POSTs a second for ``duration_s`` to ``url`` (bodies in turn); the summary dict."""
    return asyncio.run(_generate(url, [b.encode() for b in bodies], rate, duration_s, max_connections))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--bodies", required=True, type=Path, help="one JSON request body per line")
    parser.add_argument("--rate", required=True, type=float, help="requests per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of arrivals")
    parser.add_argument("--max-connections", type=int, default=1024)
    a = parser.parse_args(argv)
    bodies = [line for line in a.bodies.read_text().splitlines() if line.strip()]
    t0 = time.perf_counter()
    out = open_loop(a.url, bodies, a.rate, a.duration, a.max_connections)
    out["wall_s"] = time.perf_counter() - t0
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
