"""What the app builder and the ingress derive from a validated ``AppArgs``.

Sits in ``ecomine.serve`` between ``config`` (the typed args) and ``app`` / ``ingress`` /
``colocation`` / ``ecomine.serve.swap``: each arm's constructor arguments, the colocated
ingress's ``user_config`` (the arms' settings by deployment name), and the ingress's
admission limit (how many prediction requests one ingress replica lets in at once).
"""

from __future__ import annotations

from typing import Any

from ecomine.serve.config import AppArgs, ModelResources, RecommendArgs, RiskArgs, deployment_name

__all__ = ["admission_limit", "arm_init_kwargs", "colocated_user_config"]


def _replicas(res: ModelResources) -> int:
    if res.autoscaling_config is not None:
        return int(res.autoscaling_config.get("max_replicas") or 1)
    return res.num_replicas if isinstance(res.num_replicas, int) else 1


def admission_limit(args: AppArgs) -> int | None:
    """The in-flight limit of one ingress replica (``ingress.max_in_flight``); None: admission off.

    Unset, it is what the models can hold at once: the largest ``max_ongoing_requests`` x
    replicas (autoscaling: ``max_replicas``) among the tasks, shared by the ingress replicas
    (autoscaling: ``min_replicas`` of them; colocated: one task's ``max_ongoing_requests`` per ingress replica, whose arms they are),
    and always below the ingress's own ``max_ongoing_requests``.
    """
    ing = args.ingress
    if ing.max_in_flight == 0:
        return None
    if ing.max_in_flight is not None:
        return ing.max_in_flight
    tasks = args.tasks().values()
    if ing.colocate:
        limit = max(t.resources.max_ongoing_requests for t in tasks)
    else:
        ingress_replicas = int((ing.autoscaling_config or {}).get("min_replicas") or 1) if ing.autoscaling_config \
            else (ing.num_replicas if isinstance(ing.num_replicas, int) else 1)
        held = max(t.resources.max_ongoing_requests * _replicas(t.resources) for t in tasks)
        limit = -(-held // max(1, ingress_replicas))
    return max(1, min(limit, ing.max_ongoing_requests - 1)) if ing.max_ongoing_requests > 1 else 1


def arm_init_kwargs(args: AppArgs, task: str, arm: str) -> dict[str, Any]:
    """The constructor arguments of one arm's model deployment (``deployments._ModelServer``)."""
    task_args = args.tasks()[task]
    kwargs: dict[str, Any] = {
        "registry": args.registry,
        "name": deployment_name(task, arm),
        "task": task,
        "loader": task_args.loader,
        "s3": args.s3.model_dump() if args.s3 else None,
        # what the args name: a replica that cannot load its user_config starts on it (deployments._ModelServer)
        "fallback": task_args.settings(arm).model_dump(exclude_none=True),
    }
    if isinstance(task_args, RecommendArgs):
        kwargs["catalogue_uri"] = task_args.catalogue_uri
    if isinstance(task_args, RiskArgs):
        kwargs["threshold"] = task_args.threshold
    return kwargs


def colocated_user_config(args: AppArgs) -> dict[str, dict[str, Any]]:
    """The Ingress deployment's ``user_config`` when arms are colocated: settings by deployment name."""
    return {
        deployment_name(task, arm): task_args.settings(arm).model_dump(exclude_none=True)
        for task, task_args in args.tasks().items()
        for arm in task_args.arms()
    }
