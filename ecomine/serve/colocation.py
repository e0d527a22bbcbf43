"""``ingress.colocate: true``: the model arms inside the ingress replica, behind the handle interface.

Sits in ``ecomine.serve`` under the ingress: instead of one Serve deployment per
arm, the ingress builds the deployments' own classes in its process
(``local_arms``) and wraps each in ``LocalHandle``, so ``ecomine.serve.router``
calls them exactly as it calls Serve handles, minus the hop between processes.
The arms' settings (versions, batching) arrive as the Ingress deployment's
``user_config`` (``{deployment name: ModelSettings}``) and swap in place
(``reconfigure_arms``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ecomine.serve.arm_options import arm_init_kwargs
from ecomine.serve.config import AppArgs, deployment_name

__all__ = ["LocalHandle", "local_arms", "local_handles", "reconfigure_arms"]


class _LocalMethod:
    """One method of a colocated arm: ``.remote(x)`` starts it as a Task (what a Serve handle's call returns)."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Any) -> None:
        self._fn = fn

    def remote(self, *args: Any) -> "asyncio.Task[Any]":
        return asyncio.ensure_future(self._fn(*args))


class LocalHandle:
    """A colocated arm behind the handle interface the routers use: ``arm.method.remote(x)`` -> a Task."""

    def __init__(self, server: Any) -> None:
        self._server = server

    def __getattr__(self, method: str) -> _LocalMethod:
        # built once per method name, then found as an attribute: the request path makes no object here
        bound = _LocalMethod(getattr(self._server, method))
        setattr(self, method, bound)
        return bound


def local_arms(args: AppArgs) -> dict[str, Any]:
    """One in-process model server per arm (the deployments' own classes, minus the deployment), by deployment name."""
    from ecomine.serve.deployments import model_deployment

    arms = {}
    for task, task_args in args.tasks().items():
        for arm, arm_args in task_args.arms().items():
            server = model_deployment(task, arm_args.is_ensemble).func_or_class(**arm_init_kwargs(args, task, arm))
            server.offload_compute = True  # this loop also serves HTTP: compute in a worker thread
            arms[deployment_name(task, arm)] = server
    return arms


def local_handles(args: AppArgs, arms: dict[str, Any]) -> dict[str, dict[str, LocalHandle]]:
    """``{task: {arm: LocalHandle}}``: what the routers take in place of Serve handles."""
    return {
        task: {arm: LocalHandle(arms[deployment_name(task, arm)]) for arm in task_args.arms()}
        for task, task_args in args.tasks().items()
    }


async def reconfigure_arms(arms: dict[str, Any], user_config: dict[str, Any]) -> None:
    """Apply ``{deployment name: ModelSettings}`` arm by arm (each loads, then swaps in place).

    An arm that already serves keeps its model when its settings are refused (and reports it,
    see ``deployments._ModelServer.reconfigure``); only an arm with nothing loaded yet raises.
    A name that is no arm raises ValueError before any arm changes."""
    unknown = sorted(set(user_config or {}) - set(arms))
    if unknown:
        raise ValueError(f"Ingress: user_config names {unknown}; the colocated arms are {sorted(arms)}")
    for name, server in arms.items():
        if name in (user_config or {}):
            await server.reconfigure(user_config[name])
