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


def _args(serving_data, *, max_k: int = 50) -> dict:
    return {
        "registry": str(serving_data.registry),
        "recommend": {
            "champion": {"version": serving_data.rec_a},
            "batching": {"max_batch_size": 8},
            "resources": {"num_cpus": 0.1, "max_ongoing_requests": 16, "autoscaling_config": {
                "min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1,
                "upscale_delay_s": 1, "downscale_delay_s": 3, "metrics_interval_s": 0.5, "look_back_period_s": 2,
            }},
        },
        "limits": {"max_k": max_k},
        "auth": {"api_keys_env": None},
        "ingress": {"num_cpus": 0.05, "colocate": False},
        "observability": {"log_requests": False},
    }


@pytest.fixture(scope="module")
def app(serve_base, serving_data):
    """The split layout (ingress -> recommend deployment), autoscaling 1..2 on the recommend deployment."""
    from ray import serve

    from ecomine.serve.app import build

    serve.run(build(_args(serving_data)), name=APP, route_prefix=f"/{APP}")
    history = serving_data.users[next(iter(serving_data.users))][:5]
    yield {"url": f"{serve_base}/{APP}", "bodies": [json.dumps({"history": list(history), "k": 5})]}
    serve.delete(APP)


def test_sustained_load_scales_up_and_a_trickle_scales_back_with_no_failed_request(bench, app):
    from ecomine.serve.config import deployment_name

    deployment = deployment_name("recommend", "champion")
    t0 = time.monotonic()
    out = bench.exercise(f"{app['url']}/v1/recommend", APP, deployment, app["bodies"], concurrency=8, after_s=3,
                         up_timeout_s=60, down_timeout_s=60, log=print)
    print(f"[autoscale] {out} in {time.monotonic() - t0:.1f} s")
    assert out["scale_up_s"] is not None, out  # 2 replicas RUNNING under load
    assert out["scale_down_s"] is not None, out  # back to 1 under the trickle
    assert out["failed"] == 0, out["errors"]
    assert out["before"]["ok"] > 0 and out["after"]["ok"] > 0 and out["trickle"]["ok"] > 0, out
    assert bench.running_replicas(APP, deployment) == 1


def test_a_redeploy_that_changes_args_fails_nothing_and_stalls_nothing(bench, app, serving_data):
    """`max_surge_percent` (100 by default): the ingress and the one recommend replica are
    replaced by new ones that start before the old ones stop (Ray's own default stops first)."""
    import httpx
    from ray import serve

    from ecomine.serve.app import build

    url = f"{app['url']}/v1/recommend"
    assert httpx.post(url, json={"history": ["x"], "k": 60}, timeout=30).status_code == 422  # max_k 50
    load = bench.ClosedLoop(url, app["bodies"])
    load.resize(4)
    try:
        time.sleep(1.0)
        t0 = time.monotonic()
        serve.run(build(_args(serving_data, max_k=80)), name=APP, route_prefix=f"/{APP}")  # new ingress args
        redeploy_s = time.monotonic() - t0
        time.sleep(1.0)
    finally:
        load.stop()
    slowest = max(s for _, _, s in load.done)
    print(f"[redeploy] {len(load.done)} requests over a {redeploy_s:.1f} s redeploy, slowest {slowest:.2f} s")
    assert load.failed == 0, load.errors[:5]
    assert slowest <= 2.0, slowest
    assert httpx.post(url, json={"history": ["x"], "k": 60}, timeout=30).status_code == 200  # the new args serve
