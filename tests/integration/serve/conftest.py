"""Fixtures of the Serve tests: one registry, one Serve instance, two apps shared by the package.

Ray starts once (``ray_session``, 4 logical CPUs); Serve starts once on a free
loopback port. The two shared apps are deployed together (``serve.run_many``)
and deleted when the package's tests end, so the fractional CPUs they hold
are free again before other integration tests (Ray Train) run:

- ``full`` at /full: every task (demand/risk through stand-in models), users
  table, catalogue, an API key, a shadow challenger (an Ensemble), and live events
  (an SQLite history store, the event log drained every half second).
- ``lean`` at /lean: recommend only, champion vs an Ensemble challenger on a
  30 % sticky A/B split, no users table, both arms colocated in the ingress replica.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ecomine.cluster.session import free_port
from ecomine.serve.security import key_hash
from tests.integration.serve.registry_setup import ServingData, build_serving_data

STANDIN = "tests.integration.serve.standin_models"
API_KEY = "test-key-5b0d"
FILE_KEY = "file-key-93e1c7"  # a second key, in auth.api_keys_file (what a mounted secret looks like)
REPO = Path(__file__).resolve().parents[3]
# Replicas are tiny here: 0.1 CPU each keeps the whole package under 1 logical CPU.
SMALL = {"num_cpus": 0.1, "max_ongoing_requests": 32}


@dataclass
class ServeTarget:
    """One deployed app: its base URL and the args it was built from."""

    url: str
    name: str
    args: dict[str, Any]
    headers: dict[str, str]

    def post(self, path: str, body: Any = None, *, headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        return httpx.post(self.url + path, json=body, headers={**self.headers, **(headers or {})}, timeout=60, **kw)

    def get(self, path: str, *, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.get(self.url + path, headers={**self.headers, **(headers or {})}, timeout=60)


@pytest.fixture(scope="session")
def serving_data(tmp_path_factory: pytest.TempPathFactory) -> ServingData:
    return build_serving_data(tmp_path_factory.mktemp("serving"))


@pytest.fixture(scope="package")
def serve_base(ray_session) -> str:
    """Serve on a free loopback port, shut down when this package's tests end: its controller, proxy and
    replicas poll and report all the time, and the training and tuning tests after them need the cores."""
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


def api_keys_file(data: ServingData) -> Path:
    path = data.registry.parent / "api-keys"
    path.write_text(f"# one key per line\n{FILE_KEY}\n")
    return path


def full_args(data: ServingData) -> dict[str, Any]:
    return {
        "registry": str(data.registry),
        "recommend": {
            "champion": {"version": "production"},
            "challenger": {"members": [{"version": data.rec_a, "weight": 1.0}, {"version": data.rec_b, "weight": 2.0}]},
            "traffic": {"mode": "shadow", "weight": 1.0},
            "users_uri": str(data.users_uri),
            "catalogue_uri": str(data.catalogue_uri),
            "resources": SMALL,
        },
        "demand": {"champion": {"version": data.dem_a}, "loader": f"{STANDIN}:load_forecaster", "resources": SMALL},
        "risk": {"champion": {"version": data.risk_a}, "loader": f"{STANDIN}:load_risk_model", "resources": SMALL},
        "limits": {"max_k": 50, "max_history": 100, "max_demand_items": 20, "max_body_bytes": 16384, "max_orders": 5,
                   "max_events": 20},
        # inline keys are hashes only; the file holds a plain key, read by the ingress replica
        "auth": {"api_keys": [key_hash(API_KEY)], "api_keys_env": None, "api_keys_file": str(api_keys_file(data))},
        "ingress": {"num_cpus": 0.05},
        "live": {"store": "sqlite", "path": str(live_paths(data)[0]), "log_uri": str(live_paths(data)[1]),
                 "log_flush_s": 0.5},
    }


def live_under(args: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``args`` (a copy of serve_configs/local.yaml's) with its live store and event log under ``folder``,
    not where the test runs (local.yaml's paths are relative to `serve up`'s directory)."""
    args["live"] = {**args.get("live", {}), "path": str(folder / "live" / "history.sqlite"),
                    "log_uri": str(folder / "live" / "events")}
    return args


def live_paths(data: ServingData) -> tuple[Path, Path]:
    """The full app's history store file and event-log folder."""
    return data.registry.parent / "live" / "history.sqlite", data.registry.parent / "events"


def lean_args(data: ServingData) -> dict[str, Any]:
    return {
        "registry": str(data.registry),
        "recommend": {
            "champion": {"version": data.rec_a},
            "challenger": {"members": [{"version": data.rec_a}, {"version": data.rec_b}]},
            "traffic": {"mode": "ab", "weight": 0.3, "salt": "lean-test"},
            "resources": SMALL,
        },
        "auth": {"api_keys_env": None},
        "ingress": {"num_cpus": 0.1, "colocate": True},
    }


@pytest.fixture(scope="package")
def apps(serve_base: str, serving_data: ServingData) -> dict[str, ServeTarget]:
    from ray import serve
    from ray.serve.api import RunTarget

    from ecomine.serve.app import build

    specs = {"full": full_args(serving_data), "lean": lean_args(serving_data)}
    t0 = time.perf_counter()
    serve.run_many([RunTarget(build(args), name=name, route_prefix=f"/{name}") for name, args in specs.items()])
    print(f"\n[serve] full + lean apps running after {time.perf_counter() - t0:.1f} s")
    yield {
        "full": ServeTarget(f"{serve_base}/full", "full", specs["full"], {"Authorization": f"Bearer {API_KEY}"}),
        "lean": ServeTarget(f"{serve_base}/lean", "lean", specs["lean"], {}),
    }
    for name in specs:
        serve.delete(name)


@pytest.fixture(scope="package")
def full(apps: dict[str, ServeTarget]) -> ServeTarget:
    return apps["full"]


@pytest.fixture(scope="package")
def lean(apps: dict[str, ServeTarget]) -> ServeTarget:
    return apps["lean"]


def serve_log_lines(app: str, deployment: str, needle: str, timeout_s: float = 10.0) -> list[str]:
    """Lines containing ``needle`` in the replica logs of ``app``'s ``deployment`` (waits for the flush)."""
    import ray

    logs = Path(ray._private.worker.global_worker.node.get_logs_dir_path()) / "serve"
    deadline = time.monotonic() + timeout_s
    while True:
        found = [
            line
            for path in sorted(logs.glob(f"replica_{app}_{deployment}_*.log"))
            for line in path.read_text(errors="replace").splitlines()
            if needle in line
        ]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.25)
