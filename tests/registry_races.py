"""Concurrent writers on one registry, the scenario of the registry race tests (local and S3).

Each writer registers its own version, then promotes it to ``staging`` and to
``production``, all writers at once (a barrier before each step). Nothing may be
lost: every version is listed and verifies, and each stage's history holds every
promotion exactly once. Writers run as threads or as forked processes.
"""

from __future__ import annotations

import json
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from ecomine.registry import Registry

__all__ = ["model_dir", "in_threads", "race_register_and_promote", "assert_nothing_lost"]

TASK = "recommend"


def model_dir(folder: Path, seed: int) -> Path:
    """A small version folder: safetensors weights and a config."""
    folder.mkdir(parents=True)
    weights = np.random.default_rng(seed).standard_normal((4, 3)).astype(np.float32)
    save_file({"head.weight": weights}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"seed": seed}))
    return folder


def in_threads(work: Callable[[Any], object], items: Sequence[Any]) -> list[object]:
    """``work(item)`` for every item, each in its own thread, all released at once; what each
    returned or raised, in the order they finished."""
    barrier = threading.Barrier(len(items))
    outcomes: list[object] = []

    def run(item: Any) -> None:
        barrier.wait(timeout=60)
        try:
            outcomes.append(work(item))
        except Exception as exc:  # returned to the caller, who asserts on it
            outcomes.append(exc)

    threads = [threading.Thread(target=run, args=(item,)) for item in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def _writer(root: str, src: str, seed: int, barrier: Any, out: Any) -> None:
    try:
        reg = Registry(root)
        barrier.wait(timeout=120)
        version = reg.register(TASK, src, spec={"task": TASK}, data_fingerprint=f"fp-{seed}", metrics={"seed": seed}).version
        for stage in ("staging", "production"):
            barrier.wait(timeout=120)
            reg.promote(TASK, version, stage)
        out.put(("ok", version))
    except BaseException as exc:  # reported by the driver
        out.put(("error", f"writer {seed}: {type(exc).__name__}: {exc}"))


def race_register_and_promote(root: str, tmp_path: Path, *, writers: int, processes: bool) -> tuple[list[str], float]:
    """Run the writers; returns the versions they registered and the seconds it took. Raises on any error."""
    sources = [str(model_dir(tmp_path / f"race-src-{i}", seed=i)) for i in range(writers)]
    if processes:
        ctx = multiprocessing.get_context("fork")
        barrier, out = ctx.Barrier(writers), ctx.Queue()
        workers: list[Any] = [ctx.Process(target=_writer, args=(root, s, i, barrier, out)) for i, s in enumerate(sources)]
    else:
        barrier, out = threading.Barrier(writers), queue.Queue()
        workers = [threading.Thread(target=_writer, args=(root, s, i, barrier, out)) for i, s in enumerate(sources)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    results = [out.get(timeout=300) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    seconds = time.perf_counter() - start
    errors = [text for kind, text in results if kind == "error"]
    assert errors == [], errors
    return [text for _kind, text in results], seconds


def assert_nothing_lost(reg: Registry, versions: list[str]) -> None:
    assert len(set(versions)) == len(versions)
    assert sorted(v.version for v in reg.list(TASK)) == sorted(versions)
    for stage in ("staging", "production"):
        pointer = reg.stage(TASK, stage)
        assert pointer is not None, stage
        history = [*pointer.previous, pointer.version]
        assert sorted(history) == sorted(versions), (stage, history)  # every promotion, each once
    for version in versions:
        reg.fetch(TASK, version)  # whole, every checksum verified
