"""What a Serve config will serve, resolved here before anything reaches a cluster.

Sits in ``ecomine.serve`` between ``control`` (reading and schema-checking a config)
and the verbs that send one (``ecomine serve check | up``, ``cli.serve``). For each
ecomine application it runs the app builder's own checks (``serve.app.checked_args``:
every version and ensemble member resolved in the registry, stage pointers read,
checksums verified, optional tasks the registry lacks left out) plus the versions a
config's ``deployments[].user_config`` names (a hot swap written into the file), so a
config that cannot build fails in one line naming the application, task, arm and
reason - not in Ray's build task on the cluster.

``pin_paths`` expands ``${VAR:-default}`` in the registry and data paths with this
shell's environment before a config is sent (the cluster's processes do not have
it), so ``ECOMINE_REGISTRY`` means the same in ``check``, ``up`` and ``up --address``.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Any

from ecomine.serve.control import ECOMINE_IMPORT_PATH, ServeConfigError

__all__ = ["AppPlan", "preflight", "pin_paths"]

_PATH_FIELDS = (("registry",), ("recommend", "users_uri"), ("recommend", "catalogue_uri"), ("live", "path"),
                ("live", "log_uri"))


@dataclass
class AppPlan:
    """One ecomine application as it will build: its registry, what each arm serves, what is left out."""

    app: str
    registry: str
    served: dict[str, list[str]] = field(default_factory=dict)  # "task.arm" -> version ids
    refs: dict[str, list[str]] = field(default_factory=dict)  # "task.arm" -> what the config names (production, ...)
    skipped: dict[str, str] = field(default_factory=dict)  # task -> why it is left out

    def lines(self) -> list[str]:
        out = []
        for arm, versions in self.served.items():
            named = ", ".join(self.refs.get(arm, []))
            out.append(f"{arm}: {named} -> {', '.join(versions)}" if named and named != ", ".join(versions)
                       else f"{arm}: {', '.join(versions)}")
        out += [f"{task}: left out (if_missing: skip): {why}" for task, why in self.skipped.items()]
        return out


def _override_versions(app: Any) -> list[tuple[str, str, str]]:
    """(deployment, task, version ref) for every version a ``deployments[].user_config`` names."""
    out = []
    for dep in app.deployments or []:
        uc = getattr(dep, "user_config", None)
        if not isinstance(uc, dict):
            continue
        # colocated: {"recommend-champion": settings, ...} on the Ingress; else the arm's own settings
        entries = {k: v for k, v in uc.items() if isinstance(v, dict)} if dep.name == "Ingress" else {dep.name: uc}
        for arm_name, settings in entries.items():
            task = arm_name.split("-", 1)[0]
            refs = [settings["version"]] if settings.get("version") else [
                m.get("version") for m in settings.get("members") or [] if isinstance(m, dict)]
            out += [(f"{dep.name}.user_config.{arm_name}" if dep.name == "Ingress" else f"{dep.name}.user_config",
                     task, str(r)) for r in refs if r]
    return out


def preflight(schema: Any, source: str) -> list[AppPlan]:
    """Resolve every ecomine application of a validated ``ServeDeploySchema`` as its build would.

    Raises ServeConfigError: ``<source>: application '<app>': <task>.<arm>.version: <reason>``.
    """
    from ecomine.registry import Registry, RegistryError
    from ecomine.serve.app import BuildError, checked_args
    from ecomine.serve.config import AppArgs
    from ecomine.specs import SpecError
    from ecomine.storage import StorageError

    plans = []
    for app in schema.applications:
        if app.import_path != ECOMINE_IMPORT_PATH:
            continue
        where = f"{source}: application {app.name!r}"
        try:
            args, skipped, served = checked_args(AppArgs.model_validate(app.args))
        except (BuildError, SpecError) as exc:
            raise ServeConfigError(f"{where}: {exc}") from None
        refs = {f"{task}.{arm}": [m.version for m in arm_args.refs()]
                for task, task_args in args.tasks().items() for arm, arm_args in task_args.arms().items()}
        plan = AppPlan(app=app.name, registry=args.registry, served=served, refs=refs, skipped=skipped)
        registry = Registry(args.registry, s3=args.s3)
        for path, task, ref in _override_versions(app):
            if task in skipped:
                raise ServeConfigError(f"{where}: deployments.{path}: {task} is left out of this app "
                                       f"(if_missing: skip: {skipped[task]}), so nothing can be swapped in")
            try:
                mv = registry.get(task, ref)
                registry.fetch(task, mv.version)
            except (RegistryError, StorageError) as exc:
                raise ServeConfigError(f"{where}: deployments.{path}: {exc}") from None
        plans.append(plan)
    return plans


def _is_loopback(address: str) -> bool:
    from urllib.parse import urlparse

    host = urlparse(address if "://" in address else f"http://{address}").hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def pin_paths(raw: dict[str, Any], dashboard: str | None = None) -> dict[str, Any]:
    """A copy of the raw Serve config with each ecomine app's registry and data paths expanded here.

    ``${VAR:-default}`` takes this shell's value. A relative local path becomes absolute
    (against this directory) when the cluster runs on this machine (``dashboard`` on
    loopback, or None for a Ray started here); for a remote cluster it is left as written.
    """
    from ecomine import storage
    from ecomine.specs import expand_uri

    out = copy.deepcopy(raw)
    local = dashboard is None or _is_loopback(dashboard)
    for app in out.get("applications") or []:
        if app.get("import_path") != ECOMINE_IMPORT_PATH or not isinstance(app.get("args"), dict):
            continue
        for path in _PATH_FIELDS:
            holder = app["args"]
            for key in path[:-1]:
                holder = holder.get(key) if isinstance(holder, dict) else None
            if not isinstance(holder, dict) or not isinstance(holder.get(path[-1]), str):
                continue
            value = expand_uri(holder[path[-1]])
            if local and not storage.is_s3(value) and not value.startswith("file://"):
                value = os.path.abspath(os.path.expanduser(value))
            holder[path[-1]] = value
    return out
