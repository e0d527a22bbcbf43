"""serve_configs/local.yaml deployed the way `serve run CONFIG` does, then a version swapped in place.

`serve run serve_configs/local.yaml` validates the file as a ServeDeploySchema and hands it
to the Serve controller (``deploy_apps``); this does the same inside the test session's Ray
(only the registry path and the route prefix are changed). Its arms are colocated in the
ingress replica, so re-sending the config with the Ingress deployment's ``user_config``
(the champion's settings by deployment name) under ``deployments:`` is how an operator swaps
a version: the running replica loads the new version and switches, and a stream of requests
sees no error.
"""

from __future__ import annotations

import copy
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from ecomine.serve_cli import read_serve_config, validate_serve_config
from tests.integration.serve.conftest import REPO, STANDIN, serve_log_lines

pytestmark = pytest.mark.integration
APP = "local"


def local_config(registry: Path, user_config: dict[str, Any] | None = None) -> dict[str, Any]:
    raw = copy.deepcopy(read_serve_config(REPO / "serve_configs" / "local.yaml"))
    app = raw["applications"][0]
    app.update(name=APP, route_prefix=f"/{APP}")
    app["args"]["registry"] = str(registry)
    app["args"]["recommend"]["resources"]["num_cpus"] = 0.1
    # the test registry's demand/risk versions are stand-ins: their loaders, the config's `latest`
    app["args"]["demand"]["loader"] = f"{STANDIN}:load_forecaster"
    app["args"]["risk"]["loader"] = f"{STANDIN}:load_risk_model"
    if user_config is not None:
        app["deployments"] = [{"name": "Ingress", "user_config": {"recommend-champion": user_config}}]
    return raw


def deploy(raw: dict[str, Any]) -> None:
    # What `serve run CONFIG` does after validating (ray.serve.scripts.run): the controller client's deploy_apps.
    from ray.serve._private.api import serve_start

    schema = validate_serve_config(raw, "local.yaml (test copy)")
    serve_start().deploy_apps(schema, _blocking=True)


def wait_for(predicate, timeout_s: float = 120.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


@pytest.fixture(scope="module")
def local_url(serve_base: str, serving_data) -> str:
    from ray import serve

    deploy(local_config(serving_data.registry))
    yield f"{serve_base}/{APP}"
    serve.delete(APP)


def _model(url: str) -> str | None:
    try:
        return httpx.get(url + "/v1/models", timeout=10).json()["tasks"]["recommend"]["champion"].get("model")
    except (httpx.HTTPError, KeyError, ValueError):
        return None


def test_local_config_comes_up_and_answers(local_url: str, serving_data) -> None:
    assert httpx.get(local_url + "/healthz").json()["tasks"] == ["recommend", "demand", "risk"]
    r = httpx.post(local_url + "/v1/recommend", json={"history": serving_data.items[:3], "k": 5})
    assert r.status_code == 200, r.text
    # `latest` is the newest registered recommend version
    assert r.json()["model"] == f"recommend/{serving_data.rec_other}" and len(r.json()["items"]) == 5
    demand = httpx.post(local_url + "/v1/demand", json={"item_ids": serving_data.items[:2]})
    assert demand.status_code == 200 and demand.json()["versions"] == [serving_data.dem_b]  # the newest
    assert httpx.get(local_url + "/docs").status_code == 200


def test_hot_swap_under_a_request_stream_loses_nothing(local_url: str, serving_data) -> None:
    history = serving_data.items[:3]  # known to every version
    stop = threading.Event()
    results: list[tuple[int, str]] = []
    lock = threading.Lock()

    def stream() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                try:
                    r = client.post(local_url + "/v1/recommend", json={"history": history, "k": 3})
                    outcome = (r.status_code, r.json().get("model", r.text) if r.status_code == 200 else r.text)
                except httpx.HTTPError as exc:
                    outcome = (0, repr(exc))
                with lock:
                    results.append(outcome)

    threads = [threading.Thread(target=stream) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(results) >= 20, what="requests before the swap")
        new = {"version": serving_data.rec_a, "max_batch_size": 8, "batch_wait_timeout_s": 0.002}
        deploy(local_config(serving_data.registry, user_config=new))
        wait_for(lambda: _model(local_url) == f"recommend/{serving_data.rec_a}", what="the new version")
        n = len(results)
        wait_for(lambda: len(results) >= n + 20, what="requests after the swap")
    finally:
        stop.set()
        for t in threads:
            t.join()
    failures = [r for r in results if r[0] != 200]
    assert not failures, failures[:5]
    models = [m for _, m in results]
    assert models[0] == f"recommend/{serving_data.rec_other}" and models[-1] == f"recommend/{serving_data.rec_a}"
    # in place: the same (ingress) replica logged a swap from the old model (no new replica was started)
    swaps = serve_log_lines(APP, "Ingress", "ecomine.model_swap")
    assert any(f"previous=recommend/{serving_data.rec_other}" in line for line in swaps), swaps
    logs = Path(__import__("ray")._private.worker.global_worker.node.get_logs_dir_path()) / "serve"
    assert len(list(logs.glob(f"replica_{APP}_Ingress_*.log"))) == 1
    info = httpx.get(local_url + "/v1/models").json()["tasks"]["recommend"]["champion"]
    assert info["max_batch_size"] == 8 and info["batch_wait_timeout_s"] == 0.002
