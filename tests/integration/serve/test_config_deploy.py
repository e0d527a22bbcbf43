"""serve_configs/local.yaml deployed the way `serve run CONFIG` does, then a version swapped in place.

`serve run serve_configs/local.yaml` validates the file as a ServeDeploySchema and hands it
to the Serve controller (``deploy_apps``); this does the same inside the test session's Ray
(only the registry path and the route prefix are changed). Its arms are colocated in the
ingress replica, so re-sending the config with the Ingress deployment's ``user_config``
(the champion's settings by deployment name) under ``deployments:`` is how an operator swaps
a version: the running replica loads the new version and switches, and a stream of requests
sees no error.

A second application in the same config, ``pair`` (recommend only, in a deployment of its own
with two replicas, on a copy of the registry), is swapped to a version with one flipped byte:
both replicas refuse it and keep serving, and the app, ``ecomine serve status`` and
``ecomine serve up`` say which file failed.
"""

from __future__ import annotations

import copy
import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from ecomine.serve.control import read_serve_config, validate_serve_config
from tests.integration.serve.conftest import REPO, STANDIN, live_under, serve_log_lines

pytestmark = pytest.mark.integration
APP = "local"
PAIR = "pair"


def pair_app(registry: Path, user_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Recommend only, its champion in a deployment of two replicas (not colocated)."""
    app: dict[str, Any] = {
        "name": PAIR, "route_prefix": f"/{PAIR}", "import_path": "ecomine.serve.app:build",
        "args": {
            "registry": str(registry),
            "recommend": {"champion": {"version": "rec-b"},
                          "batching": {"max_batch_size": 8},
                          "resources": {"num_cpus": 0.05, "num_replicas": 2, "max_ongoing_requests": 16}},
            "auth": {"api_keys_env": None},
            "ingress": {"num_cpus": 0.05},
            "observability": {"log_requests": False},
        },
    }
    if user_config is not None:
        app["deployments"] = [{"name": "recommend-champion", "user_config": user_config}]
    return app


def local_config(registry: Path, user_config: dict[str, Any] | None = None, *, pair: dict[str, Any]) -> dict[str, Any]:
    raw = copy.deepcopy(read_serve_config(REPO / "serve_configs" / "local.yaml"))
    raw["applications"].append(pair)  # every deploy sends both (a config deploy drops the apps it leaves out)
    app = raw["applications"][0]
    app.update(name=APP, route_prefix=f"/{APP}")
    app["args"]["registry"] = str(registry)
    live_under(app["args"], registry.parent)
    app["args"]["recommend"]["resources"]["num_cpus"] = 0.1
    # local.yaml serves the production stage; this copy serves the newest version of each task (a config
    # may say `latest`), so what it serves does not depend on what other tests promoted
    for task in ("recommend", "demand", "risk"):
        app["args"][task]["champion"] = {"version": "latest"}
    # the test registry's demand/risk versions are stand-ins: their loaders
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
def pair_registry(serving_data, tmp_path_factory) -> Path:
    registry = tmp_path_factory.mktemp("pair") / "registry"
    shutil.copytree(serving_data.registry, registry)
    return registry


@pytest.fixture(scope="module")
def local_url(serve_base: str, serving_data, pair_registry: Path) -> str:
    from ray import serve

    deploy(local_config(serving_data.registry, pair=pair_app(pair_registry)))
    yield f"{serve_base}/{APP}"
    serve.delete(APP)
    serve.delete(PAIR)


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


def test_hot_swap_under_a_request_stream_loses_nothing(local_url: str, serving_data, pair_registry: Path) -> None:
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
        deploy(local_config(serving_data.registry, user_config=new, pair=pair_app(pair_registry)))
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


def test_a_tampered_swap_keeps_both_replicas_serving_and_names_the_file(
    local_url: str, serve_base: str, pair_registry: Path, ray_dashboard: str, serving_data, tmp_path: Path,
) -> None:
    from ray import serve
    from typer.testing import CliRunner

    from ecomine.serve.control import ServeConfigError
    from ecomine.cli.serve import serve_app
    from ecomine.serve.swap import swap_served_version

    pair_url = f"{serve_base}/{PAIR}"
    history = serving_data.items[:3]
    assert httpx.post(pair_url + "/v1/recommend", json={"history": history}).json()["model"] == "recommend/rec-b"
    weights = pair_registry / "recommend" / "rec-a" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit
    weights.write_bytes(bytes(data))

    def deployed_config() -> dict[str, Any]:
        from ecomine.serve.control import serve_client

        return serve_client(ray_dashboard).get_serve_details()["applications"][PAIR]["deployed_app_config"]

    before = deployed_config()
    # the swap `ecomine retrain` makes: it sees the refusal on /v1/models, names the file, and puts the
    # app's config back, so a replica that restarts later starts on rec-b, never on the refused rec-a
    with pytest.raises(ServeConfigError, match=r"recommend-champion refused version rec-a \(model.safetensors failed its check\).*still serving recommend/rec-b; the config was put back to rec-b"):
        swap_served_version(ray_dashboard, PAIR, "recommend", "rec-a", timeout_s=60)

    assert deployed_config() == before  # the refused rec-a is nowhere in what a new replica would start from
    wait_for(lambda: httpx.get(pair_url + "/v1/models").json()["status"] == "ok", 60, "the put-back config to apply")

    # the same refusal written into a config by hand (`serve deploy`, no ecomine check in front):
    # the replicas refuse it and keep serving, and the app and `serve status` say which file failed
    deploy(local_config(serving_data.registry, pair=pair_app(pair_registry, {"version": "rec-a"})))

    logs = Path(__import__("ray")._private.worker.global_worker.node.get_logs_dir_path()) / "serve"

    def refusing_replicas() -> list[Path]:
        return [f for f in logs.glob(f"replica_{PAIR}_recommend-champion_*.log")
                if "ecomine.model_load_failed" in f.read_text(errors="replace")]

    wait_for(lambda: len(refusing_replicas()) == 2, 30, "both replicas to refuse rec-a")
    time.sleep(2)  # a replica Serve stopped would show here as not RUNNING, or as a third log file
    dep = serve.status().applications[PAIR].deployments["recommend-champion"]
    assert dep.status == "HEALTHY" and dep.replica_states == {"RUNNING": 2}, (dep.status, dep.replica_states, dep.message)
    assert len(list(logs.glob(f"replica_{PAIR}_recommend-champion_*.log"))) == 2
    for line in (ln for f in refusing_replicas() for ln in f.read_text().splitlines() if "model_load_failed" in ln):
        assert "version=rec-a" in line and "file=model.safetensors" in line and "kept=recommend/rec-b" in line
    models = {httpx.post(pair_url + "/v1/recommend", json={"history": history}).json()["model"] for _ in range(20)}
    assert models == {"recommend/rec-b"}
    report = httpx.get(pair_url + "/v1/models").json()
    champion = report["tasks"]["recommend"]["champion"]
    assert report["status"] == "degraded" and champion["status"] == "degraded" and champion["model"] == "recommend/rec-b"
    assert champion["last_reconfigure_error"]["file"] == "model.safetensors"
    assert champion["last_reconfigure_error"]["version"] == "rec-a"
    ready = httpx.get(pair_url + "/readyz")  # it answers, so ready; and it says which arm is not as configured
    assert ready.status_code == 200 and ready.json()["status"] == "degraded", ready.text
    assert "refused version rec-a" in ready.json()["detail"]["recommend-champion"]

    runner = CliRunner()
    status = runner.invoke(serve_app, ["status", "--address", ray_dashboard, "--json", "--force"])
    assert status.exit_code == 0, status.output
    pair = json.loads(status.output)[PAIR]
    assert pair["models_status"] == "degraded" and pair["refused"][0]["file"] == "model.safetensors"
    assert pair["deployments"]["recommend-champion"]["running"] == 2
    table = runner.invoke(serve_app, ["status", "--address", ray_dashboard, "--force"])
    assert table.exit_code == 0 and "degraded" in table.output and "model.safetensors" in table.output

    # `ecomine serve up` of a config that still asks for the refused version: one line naming the file
    import yaml

    config = tmp_path / "both.yaml"
    raw = local_config(serving_data.registry, pair=pair_app(pair_registry, {"version": "rec-a"}))
    raw["http_options"]["port"] = int(serve_base.rsplit(":", 1)[1])
    raw["applications"][0]["route_prefix"] = f"/{APP}"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    up = runner.invoke(serve_app, ["up", str(config), "--address", ray_dashboard, "--timeout", "60"])
    assert up.exit_code != 0 and isinstance(up.exception, ServeConfigError)
    assert "model.safetensors" in str(up.exception) and "\n" not in str(up.exception)
