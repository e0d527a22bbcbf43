"""The typed application builder: ``import_path: ecomine.serve.app:build`` in a Serve config.

The top of ``ecomine.serve`` (what ``serve run`` / ``serve deploy`` and
``ecomine serve up`` import): ``build(args: AppArgs) -> Application`` binds the
ingress to one model deployment per task and arm, the pattern of the Ray Serve
docs' typed app builder (Ray validates ``args:`` into ``AppArgs`` before the
call). Model locations come from args, never from module constants. Before
binding, every version is resolved in the registry and a recommend ensemble's
vocabularies are compared, so a typo fails the deploy with the field's path
instead of a replica crash loop (``check_versions: false`` skips this).

Importing this module does not import Ray (``AppArgs`` validates without it);
``build`` does.
"""

import logging
import os
from typing import TYPE_CHECKING, Any

from ecomine import storage
from ecomine.registry import Registry, RegistryError
from ecomine.serve.arm_options import arm_init_kwargs, colocated_user_config
from ecomine.serve.config import AppArgs, ArmArgs, TaskArgs, deployment_name
from ecomine.specs import expand_uri
from ecomine.storage import StorageError

if TYPE_CHECKING:
    from ray.serve import Application

__all__ = ["AppArgs", "BuildError", "resolve_uri", "check_versions", "drop_missing_optional", "checked_args", "build"]

logger = logging.getLogger("ecomine.serve")


class BuildError(ValueError):
    """The args name something that does not exist or cannot work together; the message names the field."""


def resolve_uri(uri: str) -> str:
    """``${VAR:-default}`` expanded; a relative local path made absolute (against this process's cwd),
    so every replica reads the same place wherever it runs."""
    text = expand_uri(uri)
    if storage.is_s3(text):
        return text
    if text.startswith("file://"):
        text = text[len("file://"):]
    return os.path.abspath(os.path.expanduser(text))


def _resolved(args: AppArgs) -> AppArgs:
    update: dict[str, Any] = {"registry": resolve_uri(args.registry)}
    rec = args.recommend
    rec_update = {k: resolve_uri(v) for k in ("users_uri", "catalogue_uri") if (v := getattr(rec, k))}
    if rec_update:
        update["recommend"] = rec.model_copy(update=rec_update)
    return args.model_copy(update=update)


def drop_missing_optional(args: AppArgs) -> tuple[AppArgs, dict[str, str]]:
    """Leave out demand/risk sections with ``if_missing: skip`` whose versions the registry lacks.

    Returns the args without them and ``{task: why}`` for each one left out.
    """
    registry, update, why = None, {}, {}
    for task in ("demand", "risk"):
        task_args = getattr(args, task)
        if task_args is None or task_args.if_missing != "skip":
            continue
        registry = registry or Registry(args.registry, s3=args.s3)
        try:
            for arm_args in task_args.arms().values():
                for member in arm_args.refs():
                    registry.get(task, member.version)
        except (RegistryError, StorageError) as exc:
            update[task], why[task] = None, str(exc)
    return (args.model_copy(update=update) if update else args), why


def check_versions(args: AppArgs) -> dict[str, list[str]]:
    """Resolve every configured version in the registry, verify its files' sha256 against its
    manifest (``Registry.fetch``: in place on a folder registry; an S3 version is downloaded into
    the building host's cache, which replicas on that host then reuse), and compare a recommend
    ensemble's vocabularies - so a tampered version fails the build, not each replica at start.

    Returns ``{"recommend.champion": [version ids], ...}``. Raises BuildError naming the field.
    """
    registry = Registry(args.registry, s3=args.s3)
    found: dict[str, list[str]] = {}
    for task, task_args in args.tasks().items():
        for arm, arm_args in task_args.arms().items():
            versions, vocab_of = [], {}
            for n, member in enumerate(arm_args.refs()):
                where = f"{task}.{arm}." + (f"members.{n}.version" if arm_args.is_ensemble else "version")
                try:
                    mv = registry.get(task, member.version)
                    registry.fetch(task, mv.version)
                except (RegistryError, StorageError) as exc:
                    raise BuildError(f"{where}: {exc}") from None
                versions.append(mv.version)
                if task == "recommend" and arm_args.is_ensemble:
                    try:
                        vocab_of[mv.version] = storage.read_json(storage.join(mv.uri, "items.json"), options=args.s3)["items"]
                    except (StorageError, KeyError, TypeError) as exc:
                        raise BuildError(f"{where}: cannot read the item vocabulary of recommend/{mv.version}: {exc}") from None
            if vocab_of:
                first, items = next(iter(vocab_of.items()))
                for version, other in vocab_of.items():
                    if other != items:
                        raise BuildError(
                            f"{task}.{arm}.members: recommend/{first} ({len(items)} items) and recommend/{version} "
                            f"({len(other)} items) have different item vocabularies; members of a recommend "
                            "ensemble must share one"
                        )
            found[f"{task}.{arm}"] = versions
    return found


def checked_args(args: AppArgs) -> tuple[AppArgs, dict[str, str], dict[str, list[str]]]:
    """What ``build`` binds, checked as it checks it: paths made absolute, optional tasks the registry
    lacks left out, every version resolved (unless ``check_versions: false``).

    Returns ``(args, {task left out: why}, {"task.arm": [version ids]})``; ``ecomine serve check``
    and ``serve up`` call it before anything is sent, so a config that cannot build fails here.
    Raises BuildError naming the field.
    """
    parsed = _resolved(args)
    try:
        parsed, skipped = drop_missing_optional(parsed)
    except (RegistryError, StorageError) as exc:  # e.g. a bad task name or an unreadable registry root
        raise BuildError(f"registry: {exc}") from None
    found = check_versions(parsed) if parsed.check_versions else {}
    return parsed, skipped, found


def _model_app(args: AppArgs, task: str, task_args: TaskArgs, arm: str, arm_args: ArmArgs) -> Any:
    from ecomine.serve.deployments import model_deployment

    res = task_args.resources
    options: dict[str, Any] = {
        "name": deployment_name(task, arm),
        "user_config": task_args.settings(arm).model_dump(exclude_none=True),
        "ray_actor_options": res.actor_options(),
        "max_ongoing_requests": res.max_ongoing_requests,
        "max_queued_requests": res.max_queued_requests,
        "max_surge_percent": res.max_surge_percent,
    }
    if res.autoscaling_config is not None:
        options["autoscaling_config"] = res.autoscaling_config
    else:
        options["num_replicas"] = res.num_replicas
    return model_deployment(task, arm_args.is_ensemble).options(**options).bind(**arm_init_kwargs(args, task, arm))


def build(args: AppArgs) -> "Application":
    """Bind the ingress and one model deployment per configured task and arm.

    ``args`` may also be a plain dict (validated here). A version that does not exist or an
    ensemble whose members do not fit together raises Ray's RayServeException with one line
    (``ecomine: <field>: <reason>``), which Serve reports as the app's DEPLOY_FAILED message at once.
    """
    from ecomine.serve.ingress import Ingress

    from ray.serve.exceptions import RayServeException

    try:
        parsed: AppArgs = args if isinstance(args, AppArgs) else AppArgs.model_validate(args)
        parsed, skipped, _ = checked_args(parsed)
    except (BuildError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        # Serve's build task fails at once on a RayServeException, with its message as the app's; any
        # other exception is retried 3 times, each logging a traceback, while `serve run` waits on
        raise RayServeException(f"ecomine: {' '.join(str(exc).split())}") from None
    for task, why in skipped.items():
        logger.warning("%s left out (if_missing: skip): %s", task, why)
    ing = parsed.ingress
    options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": ing.num_cpus, **({"runtime_env": ing.runtime_env} if ing.runtime_env else {})},
        "max_ongoing_requests": ing.max_ongoing_requests,
        "max_queued_requests": ing.max_queued_requests,
        "max_surge_percent": ing.max_surge_percent,
    }
    handles: dict[str, dict[str, Any]] | None = None
    if ing.colocate:  # the arms live in the ingress replica; their settings are its user_config
        options["user_config"] = colocated_user_config(parsed)
    else:
        handles = {
            task: {arm: _model_app(parsed, task, task_args, arm, arm_args) for arm, arm_args in task_args.arms().items()}
            for task, task_args in parsed.tasks().items()
        }
    if ing.autoscaling_config is not None:
        options["autoscaling_config"] = ing.autoscaling_config
    else:
        options["num_replicas"] = ing.num_replicas
    return Ingress.options(**options).bind(parsed, handles)
