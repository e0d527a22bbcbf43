"""Hot swap of a served version through the deployments' ``user_config`` (what `serve deploy` does by hand).

Sits in ``ecomine.serve`` beside ``control`` (the same dashboard client): ``ecomine retrain``
calls it after a promotion or a rollback. It reads the running application's
deployed config from the dashboard, changes **only** the ``user_config`` of the
arm that serves the task (the Ingress deployment's per-arm entry when the arms are
colocated, the arm's own deployment otherwise), and sends the whole config back.
Serve then calls ``reconfigure`` in place: the replica loads and verifies the new
version before it switches, so no request fails; a version that does not load is
refused by the replica, which keeps answering with the old one and reports the refusal
on ``GET /v1/models`` (``last_reconfigure_error``): the swap reads it there and fails
naming the file. ``args`` are left
untouched, since changing them would restart the deployments. The swap touches only the
arms the running app serves (its ``GET /v1/models``): a task the builder left out
(``if_missing: skip``) is neither written into the user_config nor swappable.

Only applications deployed from a config (``ecomine serve up`` / ``serve deploy``)
can be swapped this way; one started by ``serve.run`` has no deployed config.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from ecomine.serve.control import (
    ServeConfigError,
    app_statuses,
    get_models,
    models_url,
    refusal_line,
    refused_arms,
    serve_client,
)
from ecomine.serve.rest import ServeRest

__all__ = ["check_app", "swap_served_version", "swap_stage"]

INGRESS = "Ingress"  # the ingress deployment's name (its class name; ecomine.serve.app binds it)


def _running_app(client: ServeRest, app: str) -> tuple[dict[str, Any], dict[str, Any]]:
    details = client.get_serve_details()
    apps = app_statuses(details)
    if app not in apps:
        raise ServeConfigError(
            f"--serve {app!r}: no such Serve application at {client.url} "
            f"(running: {', '.join(sorted(apps)) or 'none'})"
        )
    status = apps[app].get("status")
    if status != "RUNNING":
        raise ServeConfigError(f"--serve {app!r}: the application is {status}, not RUNNING")
    if not apps[app].get("deployed_app_config"):
        raise ServeConfigError(
            f"--serve {app!r}: the application was started by serve.run, not from a config; "
            "deploy it with `ecomine serve up CONFIG` so its versions can be swapped"
        )
    return details, apps


def check_app(address: str | None, app: str) -> None:
    """ServeConfigError naming ``app`` unless it runs from a deployed config (checked before any training)."""
    with serve_client(address) as client:
        _running_app(client, app)


def _app_args(cfg: dict[str, Any]):
    from ecomine.serve.config import AppArgs

    return AppArgs.model_validate(cfg.get("args") or {})


def _running_arms(details: dict[str, Any], app: str) -> set[str] | None:
    """The arms (deployment names) the running app serves, from its ``GET /v1/models`` (None: no answer).

    Not the config's args: a task with ``if_missing: skip`` that the registry lacked at build
    time is in the args but not in the app."""
    models = get_models(models_url(details, app))
    if models is None:
        return None
    return {info["deployment"] for task in (models.get("tasks") or {}).values()
            for arm in ("champion", "challenger") if (info := task.get(arm)) and info.get("deployment")}


def _current_settings(cfg: dict[str, Any], task: str, arm: str, running: set[str] | None) -> tuple[str, dict[str, Any]]:
    from ecomine.serve.arm_options import colocated_user_config
    from ecomine.serve.config import deployment_name

    args = _app_args(cfg)
    tasks = args.tasks()
    if task not in tasks or arm not in tasks[task].arms():
        raise ServeConfigError(f"--serve: the application serves no {task} {arm} arm")
    if running is not None and deployment_name(task, arm) not in running:
        raise ServeConfigError(
            f"--serve: the application runs no {task} {arm} arm (its arms: {', '.join(sorted(running)) or 'none'}; "
            f"a task with if_missing: skip is left out when the registry had no version at deploy time): "
            "redeploy with `ecomine serve up CONFIG` to add it"
        )
    arm_name = deployment_name(task, arm)
    deployments = {d.get("name"): d for d in cfg.get("deployments") or []}
    if args.ingress.colocate:
        uc = deployments.get(INGRESS, {}).get("user_config") or colocated_user_config(args)
        return arm_name, dict(uc.get(arm_name) or tasks[task].settings(arm).model_dump(exclude_none=True))
    uc = deployments.get(arm_name, {}).get("user_config")
    return arm_name, dict(uc or tasks[task].settings(arm).model_dump(exclude_none=True))


def swap_served_version(
    address: str | None, app: str, task: str, version: str, *, arm: str = "champion", timeout_s: float = 300.0,
) -> dict[str, Any]:
    """Point ``app``'s ``task`` ``arm`` at ``version`` in place; wait until the app runs it.

    Returns ``{"deployment", "previous", "version", "seconds"}``. ServeConfigError when the
    app is missing, the replica refuses the version, or it is not serving it in time; the app's
    config is then put back as it was, so no replica ever restarts on the refused version.
    """
    with serve_client(address) as client:
        return _swap_with(client, app, task, version, arm, timeout_s)


def _swap_with(client: ServeRest, app: str, task: str, version: str, arm: str, timeout_s: float) -> dict[str, Any]:
    from ecomine.serve.arm_options import colocated_user_config

    t0, sent = time.monotonic(), time.time()
    details, apps = _running_app(client, app)
    cfg = copy.deepcopy(apps[app]["deployed_app_config"])
    running = _running_arms(details, app)
    arm_name, settings = _current_settings(cfg, task, arm, running)
    previous = settings.get("version")
    settings.pop("members", None)  # a single version replaces an ensemble list
    settings["version"] = version
    args = _app_args(cfg)
    deployments = cfg.setdefault("deployments", [])
    target = INGRESS if args.ingress.colocate else arm_name
    entry = next((d for d in deployments if d.get("name") == target), None)
    if entry is None:
        entry = {"name": target}
        deployments.append(entry)
    if args.ingress.colocate:
        uc = dict(entry.get("user_config") or colocated_user_config(args))
        if running is not None:  # only the arms the replica runs: it refuses settings for any other
            uc = {name: value for name, value in uc.items() if name in running}
        uc[arm_name] = settings
        entry["user_config"] = uc
    else:
        entry["user_config"] = settings
    head = {k: v for k, v in details.items() if k in ("proxy_location", "http_options", "grpc_options")}

    def config_with(app_config: dict[str, Any]) -> dict[str, Any]:
        return {**head, "applications": [app_config if n == app else a["deployed_app_config"]
                                         for n, a in apps.items() if a.get("deployed_app_config")]}

    client.deploy_applications(config_with(cfg))
    try:
        _wait_serving(client, app, target, arm_name, version, timeout_s - (time.monotonic() - t0), sent)
    except ServeConfigError as exc:
        # the refused version must not stay in the config a new replica starts from (a replica that
        # restarts would fail on it forever): the config the app ran before goes back
        try:
            client.deploy_applications(config_with(apps[app]["deployed_app_config"]))
            put_back = f"; the config was put back to {previous}"
        except Exception as again:  # noqa: BLE001 - said in the one line, with the refusal
            put_back = f"; putting the config back failed too ({type(again).__name__}: {again})"
        raise ServeConfigError(f"{exc}{put_back}") from None
    return {"deployment": target, "arm": arm_name, "previous": previous, "version": version,
            "seconds": round(time.monotonic() - t0, 2)}


def _served(models: dict[str, Any] | None, task: str, arm: str) -> list[str] | None:
    """The versions ``GET /v1/models`` says the arm serves (None: no answer yet)."""
    try:
        info = models["tasks"][task][arm]  # type: ignore[index]
    except (KeyError, TypeError):
        return None
    return [m.get("version") for m in info.get("members") or []]


def _wait_serving(client: ServeRest, app: str, target: str, arm_name: str, version: str, timeout_s: float,
                  since: float) -> None:
    """Until ``GET /v1/models`` shows the arm serving ``version`` alone; ServeConfigError when the
    replica refused it (the arm reports a ``last_reconfigure_error`` for it since ``since``, a Unix
    time, while the old version serves on; or, on a first load, its deployment fails) or on timeout."""
    task, arm = arm_name.split("-", 1)
    deadline = time.monotonic() + max(5.0, timeout_s)
    served: list[str] | None = None
    while True:
        details = client.get_serve_details()
        apps = app_statuses(details)
        dep = ((apps.get(app) or {}).get("deployments") or {}).get(target) or {}
        status, message = dep.get("status"), " ".join(str(dep.get("message", "")).split())
        if status in ("UNHEALTHY", "DEPLOY_FAILED"):
            raise ServeConfigError(f"--serve {app!r}: {target} refused {arm_name} -> {version}: {message[-600:]}")
        models = get_models(models_url(details, app))
        refused = [r for r in (refused_arms(models, since) if models else [])
                   if r.get("deployment") in (arm_name, INGRESS) and r.get("version") in (version, None)]
        if refused:
            raise ServeConfigError(f"--serve {app!r}: {refusal_line(app, refused[0])}")
        served = _served(models, task, arm)
        if served == [version] and status == "HEALTHY":
            return
        if time.monotonic() > deadline:
            raise ServeConfigError(
                f"--serve {app!r}: {arm_name} serves {served} {max(0.0, timeout_s):.0f} s after the swap to {version} "
                f"({target} is {status}{': ' + message[-400:] if message else ''})"
            )
        time.sleep(0.5)


def swap_stage(address: str | None, app: str, task: str, stage: str, version: str, *, timeout_s: float = 300.0) -> list[dict[str, Any]]:
    """After ``stage`` of ``task`` moved to ``version`` (promote / rollback): swap every arm of ``app``
    whose config serves that stage, in place. Returns one swap record per arm; ServeConfigError when
    no arm of the app serves ``task`` from ``stage``, or a swap is refused (its config then put back)."""
    with serve_client(address) as client:  # one client for the check and every arm's swap
        _, apps = _running_app(client, app)
        args = _app_args(apps[app]["deployed_app_config"])
        task_args = args.tasks().get(task)
        arms = [arm for arm, arm_args in (task_args.arms().items() if task_args else [])
                if not arm_args.is_ensemble and arm_args.refs()[0].version == stage]
        if not arms:
            raise ServeConfigError(f"--serve {app!r}: no {task} arm of the application serves the {stage!r} stage; "
                                   "nothing to swap (the stage moved all the same)")
        return [_swap_with(client, app, task, version, arm, timeout_s) for arm in arms]
