"""Smoke test of benchmarks/train_throughput.py: the plain-PyTorch side and the report, no Ray."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "train_throughput.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("train_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_plain_side_runs_the_loop_steps(bench, tmp_path: Path) -> None:
    spec = bench.bench_spec(users=60, items=20, days=60, epochs=2, batch_size=16, threads=1, storage=str(tmp_path))
    runner_data, data = bench.prepare(spec)
    threads = torch.get_num_threads()
    try:
        r = bench.run_plain(spec, data)
    finally:
        torch.set_num_threads(threads)
    assert r.mode == "plain" and r.extra["torch_threads"] == 1
    assert r.extra["windows"] > 0
    assert len(r.samples_per_s) == 2 and all(s > 0 for s in r.samples_per_s)
    assert all(math.isfinite(x) for x in r.train_loss)
    assert r.wall_s >= r.step_seconds > 0 and r.extra["cpu_s"] > 0


def test_steady_state_skips_the_first_epoch(bench) -> None:
    assert bench.steady_state([10.0, 100.0, 120.0, 110.0]) == 110.0
    assert bench.steady_state([42.0]) == 42.0
    assert math.isnan(bench.steady_state([]))


def test_table_reports_ratio_against_target(bench) -> None:
    load = (1.0, 1.0, 1.0)
    plain = bench.ModeResult("plain", [50.0, 100.0, 100.0], [1.0] * 3, 10.0, load, {"windows": 100})
    ray = bench.ModeResult("ray", [40.0, 85.0, 85.0], [1.0] * 3, 30.0, load, {"windows": 100})
    table = bench.format_table([plain, ray])
    assert "ratio ray/plain = 0.85 (target >= 0.90) MISSED" in table
    assert "best-of ratio 0.85" in table
    ray.samples_per_s = [40.0, 95.0, 95.0]
    assert "ratio ray/plain = 0.95 (target >= 0.90) ok" in bench.format_table([plain, ray])


def test_paired_ratio_uses_the_plain_runs_around_each_ray_run(bench) -> None:
    def run(mode: str, steady: float):
        return bench.ModeResult(mode, [1.0, steady], [1.0, 1.0], 1.0, (0.0, 0.0, 0.0), {"windows": 10})

    results = [run("plain", 100.0), run("ray", 90.0), run("plain", 80.0), run("ray", 40.0), run("plain", 40.0)]
    assert bench.paired_ratios(results) == pytest.approx([1.0, 40.0 / 60.0])
