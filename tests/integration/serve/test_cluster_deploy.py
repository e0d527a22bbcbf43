"""`ecomine serve up/status/down` against a separate `ray start --head` cluster (serve deploy path).

The cluster is a child process group of this test (own temp dir, own ports, no GPUs, 2 CPUs)
and is torn down by signalling that group only: `ray stop` would stop every Ray on the
machine, including other sessions' and this test session's own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from ecomine.cli.serve import serve_app
from ecomine.cluster.env import ONE_NODE_ENV
from ecomine.serve.control import read_serve_config
from tests.integration.serve.conftest import REPO, free_port, live_under

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def own_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test its own deployment record (ecomine.serve.deployed), so none acts on another's."""
    monkeypatch.setenv("ECOMINE_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def _ours(temp: Path) -> list[int]:
    """Pids of processes whose command line names our cluster's temp dir."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(str(temp) in part for part in (proc.info["cmdline"] or [])):
                found.append(proc.info["pid"])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.fixture(scope="module")
def cluster():
    temp = Path(tempfile.mkdtemp(prefix="ecm-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    dashboard = free_port()
    ray_bin = str(Path(sys.executable).parent / "ray")
    flags = [
        "--head", "--block", f"--port={free_port()}", "--num-cpus=2", "--num-gpus=0",
        "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
        f"--ray-client-server-port={free_port()}", f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}", f"--temp-dir={temp}", "--disable-usage-stats",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    log = open(temp / "ray-start.log", "w")
    proc = subprocess.Popen([ray_bin, "start", *flags], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {proc.returncode}: {(temp / 'ray-start.log').read_text()[-2000:]}")
            try:
                # any answer means it is up (401 without Ray's auth token, which the CLI sends)
                if httpx.get(url + "/api/version", timeout=2).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the test cluster's dashboard did not come up in 180 s")
            time.sleep(1)
        yield {"dashboard": url, "temp": temp}
    finally:
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):  # ray start drains 30 s on SIGTERM
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        deadline = time.monotonic() + 15
        while _ours(temp) and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid in _ours(temp):  # anything of ours that left the process group
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()


def _config(serving_data, tmp_path: Path, http_port: int, **champion) -> Path:
    raw = read_serve_config(REPO / "serve_configs" / "local.yaml")
    raw["http_options"]["port"] = http_port
    app = raw["applications"][0]
    app["args"]["registry"] = str(serving_data.registry)
    live_under(app["args"], tmp_path)
    app["args"]["recommend"]["champion"] = champion or {"version": "production"}
    del app["args"]["demand"], app["args"]["risk"]
    config = tmp_path / f"cluster-{http_port}.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    return config


def test_serve_up_status_down_on_a_ray_start_cluster(cluster, serving_data, tmp_path: Path) -> None:
    import shutil

    http_port = free_port()
    registry = tmp_path / "registry"  # a copy: this test moves the production stage
    shutil.copytree(serving_data.registry, registry)
    raw = read_serve_config(REPO / "serve_configs" / "local.yaml")
    raw["http_options"]["port"] = http_port
    app = raw["applications"][0]
    app["args"]["registry"] = str(registry)
    live_under(app["args"], tmp_path)
    app["args"]["recommend"]["champion"] = {"version": "production"}
    app["args"]["recommend"]["resources"]["num_cpus"] = 0.25
    # demand and risk stay as local.yaml has them (production, if_missing: skip): the test registry
    # promoted none, so the app is built without them - and a swap must touch only what runs
    config = tmp_path / "cluster.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    runner = CliRunner()

    up = runner.invoke(serve_app, ["up", str(config), "--address", cluster["dashboard"], "--timeout", "300"])
    assert up.exit_code == 0, up.output + repr(up.exception)
    assert "RUNNING ecomine" in up.output

    base = f"http://127.0.0.1:{http_port}"
    assert httpx.get(base + "/healthz", timeout=30).json()["status"] == "ok"
    r = httpx.post(base + "/v1/recommend", json={"history": serving_data.items[:4], "k": 3}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == f"recommend/{serving_data.rec_a}" and len(r.json()["items"]) == 3

    # promote / rollback move what is served (--serve: a swap in place of the arms that serve the stage),
    # on an app whose demand/risk were left out at build time: the swap touches only the arm that runs
    from ecomine.cli.main import app as cli
    from ecomine.serve.control import ServeConfigError
    from ecomine.serve.swap import swap_served_version

    def served() -> str:
        return httpx.post(base + "/v1/recommend", json={"history": serving_data.items[:4], "k": 3}, timeout=30).json()["model"]

    promoted = runner.invoke(cli, ["registry", "promote", serving_data.rec_b, "production", "--registry", str(registry),
                                   "--serve", "ecomine"])
    assert promoted.exit_code == 0, promoted.output + repr(promoted.exception)
    assert f"recommend-champion production -> {serving_data.rec_b}" in promoted.output
    assert served() == f"recommend/{serving_data.rec_b}"
    back = runner.invoke(cli, ["registry", "rollback", "production", "--registry", str(registry), "--serve", "ecomine"])
    assert back.exit_code == 0, back.output + repr(back.exception)
    assert served() == f"recommend/{serving_data.rec_a}"
    with pytest.raises(ServeConfigError, match=r"the application runs no demand champion arm \(its arms: recommend-champion"):
        swap_served_version(cluster["dashboard"], "ecomine", "demand", serving_data.dem_a, timeout_s=30)
    models = httpx.get(base + "/v1/models", timeout=30).json()
    assert models["status"] == "ok" and models["not_configured"] == ["demand", "risk"]

    status = runner.invoke(serve_app, ["status", "--json"])  # no --address: where `serve up` deployed
    assert status.exit_code == 0, status.output
    apps = json.loads(status.output)
    assert apps["ecomine"]["status"] == "RUNNING"
    assert apps["ecomine"]["deployments"]["Ingress"]["running"] == 1
    assert set(apps["ecomine"]["deployments"]) == {"Ingress"}  # local.yaml colocates the arms in the ingress
    table = runner.invoke(serve_app, ["status", "--address", cluster["dashboard"]])
    assert table.exit_code == 0 and "HEALTHY" in table.output and "1/1" in table.output

    down = runner.invoke(serve_app, ["down"])
    assert down.exit_code == 0, down.output
    assert f"deleted ecomine at {cluster['dashboard']}" in down.output
    again = runner.invoke(serve_app, ["down"])  # nothing recorded any more: refused, nothing touched
    assert "no `ecomine serve up` is recorded" in str(again.exception)
    deadline = time.monotonic() + 60
    while True:
        try:
            gone = httpx.get(base + "/healthz", timeout=5).status_code == 404
        except httpx.HTTPError:
            gone = True
        if gone or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert gone, "the application still answers after `ecomine serve down`"


def test_a_build_that_fails_on_the_cluster_ends_the_wait_with_one_line(cluster, serving_data, tmp_path: Path) -> None:
    """--no-registry skips the check here, so the cluster's build meets the missing version: Serve fails
    the app at once (ecomine's builder raises a RayServeException, which Ray does not retry) and
    `serve up` stops waiting with that line."""
    config = _config(serving_data, tmp_path, free_port(), version="v20990101-000000-deadbeef")
    up = CliRunner().invoke(serve_app, ["up", str(config), "--address", cluster["dashboard"], "--no-registry",
                                        "--timeout", "120"])
    message = str(up.exception)
    assert up.exit_code != 0 and "DEPLOY_FAILED" in message, up.output + message
    assert "ecomine: recommend.champion.version: task 'recommend' has no version 'v20990101-000000-deadbeef'" in message
    assert "Traceback" not in message and "\n" not in message
    checked = CliRunner().invoke(serve_app, ["up", str(config), "--address", cluster["dashboard"]])
    assert "recommend.champion.version" in str(checked.exception)  # with the check: refused before sending


def test_blocking_up_serves_until_serve_down_ends_it(serving_data, tmp_path: Path) -> None:
    """`serve up --blocking` starts its own Ray (its dashboard on a free port, never another Ray's
    8265), records itself, and a plain `ecomine serve down` deletes the app and ends that process."""
    http_port = free_port()
    config = _config(serving_data, tmp_path, http_port)
    # without a value of the user's for ONE_NODE_ENV's variables, so the check below is ensure_ray's doing
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS") and k not in ONE_NODE_ENV}
    env.update(ECOMINE_STATE_DIR=str(tmp_path / "state"), NO_COLOR="1")
    ecomine = str(Path(sys.executable).parent / "ecomine")
    log = open(tmp_path / "up.log", "w")
    proc = subprocess.Popen([ecomine, "serve", "up", str(config), "--blocking"], cwd=tmp_path, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while "RUNNING ecomine" not in (tmp_path / "up.log").read_text():
            assert proc.poll() is None, (tmp_path / "up.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "up.log").read_text()[-3000:]
            time.sleep(1)
        assert httpx.get(f"http://127.0.0.1:{http_port}/healthz", timeout=30).json()["status"] == "ok"
        # every process of that Ray knows its own dashboard, so Train's placement-group cleaner asks this
        # cluster, not the one a stale /tmp/ray/ray_current_cluster names (a 12 s stall at each run's end)
        dashboard = json.loads((tmp_path / "state" / "serve.json").read_text())["deployments"][-1]["address"]
        assert _spawned_env(proc.pid, "RAY_API_SERVER_ADDRESS") - {None} == {dashboard}
        # and a one-node Ray has no node to drain: its processes start with ONE_NODE_ENV (no preemption watcher)
        for key, value in ONE_NODE_ENV.items():
            assert _spawned_env(proc.pid, key) - {None} == {value}, key
        down = subprocess.run([ecomine, "serve", "down", "--timeout", "120"], env=env, capture_output=True, text=True, timeout=180)
        assert down.returncode == 0, down.stdout + down.stderr + (tmp_path / "up.log").read_text()[-3000:]
        assert "deleted ecomine" in down.stdout and f"(pid {proc.pid}) has stopped" in down.stdout, down.stdout
        assert proc.wait(timeout=60) == 0, (tmp_path / "up.log").read_text()[-3000:]
        assert "Traceback" not in (tmp_path / "up.log").read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=60)
        log.close()


def _spawned_env(pid: int, name: str) -> set[str]:
    """The values of environment variable `name` in the processes under `pid` (None where one lacks it, or
    where a process that retitled itself, as Ray's agents do, wrote over its /proc environ)."""
    import psutil

    values = set()
    for child in psutil.Process(pid).children(recursive=True):
        try:
            values.add(child.environ().get(name))
        except psutil.Error:  # ended meanwhile
            continue
    return values


def test_serve_up_without_a_cluster_says_how_to_start_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        serve_app, ["up", str(REPO / "serve_configs" / "local.yaml"), "--address", f"http://127.0.0.1:{free_port()}",
                    "--no-registry"]
    )
    assert result.exit_code != 0
    assert "ray start --head" in str(result.exception)
