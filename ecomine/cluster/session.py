"""The one place that starts or joins Ray, and the original exception inside Ray's wrappers.

Sits in `ecomine.cluster`, on the ground floor beside `specs` and `storage`: `ecomine train` (train.runner), a
Tune campaign, the distributed data engine, batch scoring and the demo all call
`ensure_ray`, so every entry point follows the same address rule and log settings.
`surfaced` gives back a known error (a DataError, a ScoreError, a ModelLoadError) that
ecomine's own code raised inside a Ray task or actor, where Ray wraps it in
RayTaskError / UserCodeException. Imports Ray only when called.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from ecomine.cluster.env import ONE_NODE_ENV, scoped_env

__all__ = ["ray_address", "free_port", "ensure_ray", "quiet_token_notice", "dashboard_url", "original_error", "surfaced"]


def ray_address(address: str | None) -> str:
    """--address, else RAY_ADDRESS, else a fresh local Ray ("local").

    Never Ray's implicit discovery: a stale /tmp/ray/ray_current_cluster left
    by an old `ray start` would make ray.init() wait on a dead cluster.
    """
    return address or os.environ.get("RAY_ADDRESS") or "local"


def free_port() -> int:
    """A TCP port free on the loopback interface now (the OS picks it)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_ray(address: str | None = None, *, local_cpus: int | None = None) -> bool:
    """Join the Ray that `ray_address(address)` names, or start a local one; True when this call started it.

    A Ray already initialised in this process is kept as it is. `local_cpus` sets the
    logical CPUs of a Ray this call starts locally (never of a cluster it joins); its dashboard
    takes a free port, so it never collides with another Ray's 8265.

    Ray's dashboard stays on: Train's placement-group cleaner needs its state API to free a
    stopped run's CPUs. A local Ray's processes are started knowing that dashboard
    (RAY_API_SERVER_ADDRESS, set only while `ray.init` spawns them): otherwise the cleaner,
    a worker that does not know its cluster, asks whatever /tmp/ray/ray_current_cluster
    names (a dead cluster after any earlier `ray start`), and every Train run waited 12 s at
    its end for that query to time out (a one-worker run of nothing: 24-27 s -> 12-15 s).

    A local Ray is one node that nothing drains, so its processes also start with `cluster.env.ONE_NODE_ENV`
    (no Train preemption watcher; a value the user exported wins). A cluster joined keeps Ray's defaults.

    Worker and controller logs stay in Ray's log files (/tmp/ray/session_latest/logs)
    instead of this terminal: the progress bar and the run's own error say what happened,
    and Ray's per-epoch reports only bury them. ECOMINE_RAY_LOGS=1 brings them back.
    """
    import ray

    if ray.is_initialized():
        return False
    target = ray_address(address)
    local: dict = {}
    if target == "local":
        port = free_port()
        local = {"include_dashboard": True, "dashboard_port": port, **({"num_cpus": local_cpus} if local_cpus is not None else {})}
    quiet_token_notice()
    # inherited by the processes ray.init starts, and only by them
    dashboard = {"RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{local['dashboard_port']}"} if local else {}
    with scoped_env(dashboard, exported_wins=False), scoped_env(ONE_NODE_ENV if local else {}):
        ray.init(address=target, log_to_driver=os.environ.get("ECOMINE_RAY_LOGS") == "1", configure_logging=False,
                 **local)
    return True


class _DropEnabledNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Token authentication is enabled")


def quiet_token_notice() -> None:
    """Silence Ray's "Token authentication is enabled for this Ray cluster" warning, which every
    `ray.init` and dashboard client printed on every normal command (often mid-table): token auth
    is Ray's secure default and stays on; a disabled one still warns (a different logger call, kept)."""
    log = logging.getLogger("ray._private.authentication.authentication_token_setup")
    if not any(isinstance(f, _DropEnabledNotice) for f in log.filters):
        log.addFilter(_DropEnabledNotice())


def dashboard_url() -> str:
    """The dashboard URL of the Ray this process is connected to (`http://host:port`).

    Ray's public API hands it out only as `ray.init`'s return value, which `ensure_ray`
    does not see when Ray was already initialised; this reads the same field.
    """
    from ray._private.worker import get_dashboard_url

    url = get_dashboard_url()
    return url if "://" in url else f"http://{url}"


def original_error(exc: BaseException, types: tuple[type[BaseException], ...]) -> BaseException | None:
    """The first exception of `types` down `exc`'s cause chain that is not one of Ray's own (None: none)."""
    from ray.exceptions import RayError

    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, types) and not isinstance(cause, RayError):
            return cause
        cause = getattr(cause, "cause", None) or cause.__cause__
    return None


@contextlib.contextmanager
def surfaced(types: tuple[type[BaseException], ...], as_type: type[Exception]) -> Iterator[None]:
    """Inside: an exception of `types` raised in a Ray task or actor comes out as `as_type(message)`,
    one line, instead of Ray's wrapper; `as_type` itself passes through; anything else is re-raised."""
    from ray.exceptions import RayError

    try:
        yield
    except Exception as exc:
        # Ray's wrapper of an actor's `as_type` is itself an `as_type` (RayTaskError subclasses the cause's
        # class), so only a plain one passes through; a wrapped one is unwrapped like the rest
        if isinstance(exc, as_type) and not isinstance(exc, RayError):
            raise
        cause = original_error(exc, (*types, as_type))
        if cause is not None:
            # Ray Data appends its retry advice to the exception's message ("\nFailed to apply UDF transform
            # after 1/1 attempts ... if you believe this to be transient."): advice about Ray, not the input
            raise as_type(str(cause).split("\nFailed to ", 1)[0]) from None
        raise
