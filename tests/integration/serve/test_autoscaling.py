"""Autoscaling, exercised (bounded): the recommend deployment of a split-layout app with
`autoscaling_config` 1..2 grows to 2 replicas under sustained load and shrinks back to 1
under a trickle, with no failed request across either move.

Runs `benchmarks/autoscale_bench.py`'s `exercise` (the benchmark's phases, the goodput
figures left to the benchmark: performance is measured, not asserted) against the session's
Serve with short delays, on the test registry's small model.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "autoscale_bench.py"
APP = "autoscale"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("autoscale_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_sustained_load_scales_up_and_a_trickle_scales_back_with_no_failed_request(bench, serve_base, serving_data):
    from ray import serve

    from ecomine.serve.app import build
    from ecomine.serve.config import deployment_name

    args = {
        "registry": str(serving_data.registry),
        "recommend": {
            "champion": {"version": serving_data.rec_a},
            "batching": {"max_batch_size": 8},
            "resources": {"num_cpus": 0.1, "max_ongoing_requests": 16, "autoscaling_config": {
                "min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1,
                "upscale_delay_s": 1, "downscale_delay_s": 3, "metrics_interval_s": 0.5, "look_back_period_s": 2,
            }},
        },
        "auth": {"api_keys_env": None},
        "ingress": {"num_cpus": 0.05, "colocate": False},
        "observability": {"log_requests": False},
    }
    deployment = deployment_name("recommend", "champion")
    serve.run(build(args), name=APP, route_prefix=f"/{APP}")
    try:
        history = serving_data.users[next(iter(serving_data.users))][:5]
        bodies = [json.dumps({"history": list(history), "k": 5})]
        t0 = time.monotonic()
        out = bench.exercise(f"{serve_base}/{APP}/v1/recommend", APP, deployment, bodies, concurrency=8, after_s=3,
                             up_timeout_s=60, down_timeout_s=60, log=print)
        print(f"[autoscale] {out} in {time.monotonic() - t0:.1f} s")
        assert out["scale_up_s"] is not None, out  # 2 replicas RUNNING under load
        assert out["scale_down_s"] is not None, out  # back to 1 under the trickle
        assert out["failed"] == 0, out["errors"]
        assert out["before"]["ok"] > 0 and out["after"]["ok"] > 0 and out["trickle"]["ok"] > 0, out
        assert bench.running_replicas(APP, deployment) == 1
    finally:
        serve.delete(APP)
