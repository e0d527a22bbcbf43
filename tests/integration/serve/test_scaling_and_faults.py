"""Scaling and faults of a live split-layout app (ingress -> recommend deployment), bounded:

- autoscaling 1..2: sustained load grows the recommend deployment to 2 replicas, a trickle
  shrinks it back, no failed request across either move (`benchmarks/autoscale_bench.py`'s
  `exercise`, on the test registry's small model; the goodput figures are the benchmark's:
  performance is measured, not asserted);
- a redeploy that changes `args` under load: no failed request, none stalled over 2 s;
- one of two replicas killed under a request stream: at most 1 % failed on the wire, none
  through the SDK (it retries), 2 replicas running again within 60 s;
- overload past the ingress's in-flight limit: the excess answered 503 in JSON with
  Retry-After, everything else 200.

The tests share one app and run in file order; each brings it to the shape it needs.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "autoscale_bench.py"
APP = "autoscale"
MAX_IN_FLIGHT = 24  # above every other test's load here; the overload test goes past it


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


def _args(serving_data, *, max_k: int = 50, replicas: int | None = None) -> dict:
    scaling = {"num_replicas": replicas} if replicas else {"autoscaling_config": {
        "min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1,
        "upscale_delay_s": 1, "downscale_delay_s": 3, "metrics_interval_s": 0.5, "look_back_period_s": 2,
    }}
    return {
        "registry": str(serving_data.registry),
        "recommend": {
            "champion": {"version": serving_data.rec_a},
            "batching": {"max_batch_size": 8},
            "resources": {"num_cpus": 0.1, "max_ongoing_requests": 16, **scaling},
        },
        "limits": {"max_k": max_k},
        "auth": {"api_keys_env": None},
        "ingress": {"num_cpus": 0.05, "colocate": False, "max_in_flight": MAX_IN_FLIGHT},
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
        # new ingress args, and two fixed replicas for the next test
        serve.run(build(_args(serving_data, max_k=80, replicas=2)), name=APP, route_prefix=f"/{APP}")
        redeploy_s = time.monotonic() - t0
        time.sleep(1.0)
    finally:
        load.stop()
    slowest = max(s for _, _, s in load.done)
    print(f"[redeploy] {len(load.done)} requests over a {redeploy_s:.1f} s redeploy, slowest {slowest:.2f} s")
    assert load.failed == 0, load.errors[:5]  # how slow the slowest was is printed above, not asserted
    assert httpx.post(url, json={"history": ["x"], "k": 60}, timeout=30).status_code == 200  # the new args serve


def test_killing_one_of_two_replicas_costs_at_most_1pc_on_the_wire_and_nothing_through_the_sdk(bench, app, serving_data):
    import ray
    from ray import serve

    from ecomine.client import EcomineClient
    from ecomine.serve.app import build
    from ecomine.serve.config import deployment_name

    deployment = deployment_name("recommend", "champion")
    if bench.running_replicas(APP, deployment) != 2:  # run on its own: bring the app to two replicas
        serve.run(build(_args(serving_data, max_k=80, replicas=2)), name=APP, route_prefix=f"/{APP}")
    prefix = f"SERVE_REPLICA::{APP}#{deployment}#"
    replicas = sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix))
    assert len(replicas) == 2, replicas

    wire = bench.ClosedLoop(f"{app['url']}/v1/recommend", app["bodies"])
    sdk_ok, sdk_errors, stop = [0], [], threading.Event()
    history = json.loads(app["bodies"][0])["history"]

    def sdk_stream() -> None:
        with EcomineClient(base_url=app["url"], timeout=30) as client:
            while not stop.is_set():
                try:
                    client.recommend(history=history, k=5)
                    sdk_ok[0] += 1
                except Exception as exc:  # noqa: BLE001 - every SDK failure is what the test counts
                    sdk_errors.append(repr(exc))

    sdk = threading.Thread(target=sdk_stream, daemon=True)
    wire.resize(3)
    sdk.start()
    try:
        time.sleep(1.5)
        ray.kill(ray.get_actor(replicas[0], namespace="serve"), no_restart=True)
        t_kill = time.monotonic()
        recovered_s = None
        while time.monotonic() - t_kill < 60:
            names = {a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix)}
            # a replacement (a name not seen before) and 2 RUNNING: Serve's status lags the death
            if len(names - set(replicas)) == 1 and len(names) == 2 and bench.running_replicas(APP, deployment) == 2:
                recovered_s = time.monotonic() - t_kill
                break
            time.sleep(0.25)
        time.sleep(2.0)  # the replacement takes traffic; the stream runs on through it
    finally:
        stop.set()
        wire.stop()
        sdk.join(timeout=60)
    n = len(wire.done)
    print(f"[kill] wire: {wire.failed} failed of {n}; sdk: {len(sdk_errors)} failed of {sdk_ok[0] + len(sdk_errors)}; "
          f"2 replicas again after {recovered_s if recovered_s is None else round(recovered_s, 1)} s")
    assert recovered_s is not None, "the killed replica was not replaced within 60 s"
    assert wire.failed <= 0.01 * n, wire.errors[:5]
    assert not sdk_errors and sdk_ok[0] > 0, sdk_errors[:5]


def test_overload_past_the_in_flight_limit_answers_json_503s_with_retry_after(bench, app):
    load = bench.ClosedLoop(f"{app['url']}/v1/recommend", app["bodies"])
    load.resize(3 * MAX_IN_FLIGHT)
    try:
        time.sleep(4.0)
    finally:
        load.stop()
    ok = len(load.done) - load.failed
    print(f"[overload] {len(load.done)} answers: {ok} x 200, {len(load.refused)} refused")
    assert len(load.refused) == load.failed, load.errors[:5]  # every failure an HTTP answer, none a transport error
    assert load.refused and all(code == 503 and ct.startswith("application/json") and ra and int(ra) >= 1
                                for code, ct, ra in load.refused), load.refused[:3]
    assert ok > 0  # the admitted ones are still served
