"""Fixtures for tests/integration (each block names its owner module)."""

# storage / registry: the loopback moto S3 server.
from tests.integration.s3_fixtures import s3_prefix, s3_server  # noqa: F401

# train / tune / serve: one Ray cluster for the whole session, started the way
# users start one (`ray start --head`) with enough logical CPUs for what the
# tests schedule (2 Train workers + Serve replicas; a Train run otherwise waits
# forever for CPUs a replica holds). RAY_ADDRESS is set in the cluster's own
# environment: Ray Train's placement-group cleaner asks the state API whether a
# run's controller died (a Tune trial stopped by ASHA), and with another Ray
# on the host it cannot tell which cluster to ask, so the CPUs leak.
import os  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from ecomine.cluster.env import ONE_NODE_ENV  # noqa: E402
from ecomine.cluster.session import free_port  # noqa: E402


_DASHBOARD: dict[str, str] = {}  # the session cluster's dashboard URL (ray job submit, serve deploy)


@pytest.fixture(scope="session")
def ray_dashboard(ray_session) -> str:
    """The session cluster's dashboard (Ray Jobs and the Serve REST API); skips if Ray was up already."""
    if "url" not in _DASHBOARD:
        pytest.skip("Ray was initialised outside the session fixture; its dashboard is unknown")
    return _DASHBOARD["url"]


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory):
    import ray

    if ray.is_initialized():
        yield ray
        return
    port = free_port()
    address = f"127.0.0.1:{port}"
    dashboard_port = free_port()
    _DASHBOARD["url"] = f"http://127.0.0.1:{dashboard_port}"
    ray_bin = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
    # Token auth is off for this loopback-only test cluster, so CLI subprocesses join it as-is. One node: it
    # starts with what ensure_ray gives a local Ray (cluster.env.ONE_NODE_ENV: no preemption watcher per run).
    env = {**os.environ, "RAY_ADDRESS": address, "RAY_AUTH_MODE": "disabled", **ONE_NODE_ENV}
    log = tmp_path_factory.mktemp("ray") / "ray_start.log"
    proc = subprocess.Popen(
        [ray_bin, "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
         "--num-cpus=4", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dashboard_port}", "--disable-usage-stats"],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    old = os.environ.get("RAY_ADDRESS")
    os.environ["RAY_ADDRESS"] = address  # CLI subprocesses in tests join this cluster
    os.environ["RAY_AUTH_MODE"] = "disabled"
    try:
        deadline = time.time() + 120
        while True:
            try:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
                break
            except Exception:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"ray start failed; see {log}:\n{log.read_text()[-2000:]}")
                time.sleep(1)
        yield ray
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("RAY_ADDRESS", None)
        else:
            os.environ["RAY_ADDRESS"] = old
        # `ray start --block` drains for ~30 s on SIGTERM; the cluster is ours alone, so cut it short.
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
