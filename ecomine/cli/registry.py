"""`ecomine registry list | show | promote | rollback`: model versions and their stages.

A typer sub-app that `ecomine.cli.main` mounts as `ecomine registry`; the work is `ecomine.registry`'s.
"""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.table import Table

from ecomine.cli._common import RegistryOpt, TaskOpt, console
from ecomine.registry import Registry

__all__ = ["registry_app"]

registry_app = typer.Typer(help="Model versions and stages (staging / production).", no_args_is_help=True)


@registry_app.command("list")
def registry_list(registry: RegistryOpt = "registry", task: Annotated[Optional[str], typer.Option()] = None) -> None:
    """Versions with their stages, tags and headline metric."""
    versions = Registry(registry).list(task)
    t = Table(title=f"registry: {registry}")
    for col in ("task", "version", "stages", "created (UTC)", "tags", "test NDCG@10 (all/new)"):
        t.add_column(col)
    for v in versions:
        test = (v.metrics or {}).get("test", {})
        ndcg = "/".join(f"{test.get(p, {}).get('NDCG@10', float('nan')):.4f}" for p in ("all_items", "new_items")) if test else "-"
        t.add_row(v.task, v.version, ",".join(v.stages) or "-", f"{v.created_at:%Y-%m-%d %H:%M}", ",".join(v.tags), ndcg)
    console.print(t)


@registry_app.command("show")
def registry_show(version: str, registry: RegistryOpt = "registry", task: TaskOpt = "recommend") -> None:
    """A version's manifest as JSON."""
    typer.echo(json.dumps(Registry(registry).show(task, version), indent=2))


ServeOpt = Annotated[
    Optional[str],
    typer.Option("--serve", help="a running application (ecomine serve up) whose arms serving this stage swap to the new version"),
]
AddressOpt = Annotated[Optional[str], typer.Option("--address", help="its Ray dashboard (default: where `serve up` deployed)")]
ForceOpt = Annotated[bool, typer.Option("--force", help="act on an --address that `ecomine serve up` did not deploy to")]


def _serve_stage(reg: Registry, serve: str, url: str, task: str, stage: str, version: str, before: str | None) -> None:
    """Move what ``serve`` serves with the stage (its arms that name ``stage``), in place; when the app
    refuses the version, the stage goes back to ``before`` so the registry and the app agree."""
    from ecomine.serve.control import ServeConfigError
    from ecomine.serve.swap import swap_stage

    try:
        swaps = swap_stage(url, serve, task, stage, version)
    except ServeConfigError as exc:
        if before is None or before == version:
            raise
        reg.promote(task, before, stage)
        raise ServeConfigError(f"{exc}; {task} {stage} put back to {before}") from None
    for swap in swaps:
        console.print(f"{serve}: {swap['arm']} {swap['previous']} -> {swap['version']} ({swap['seconds']} s, in place)")


def _serve_target(serve: str | None, address: str | None, force: bool) -> str | None:
    """The dashboard of --serve, checked before the stage moves (None without --serve)."""
    if serve is None:
        return None
    from ecomine.serve.deployed import target
    from ecomine.serve.swap import check_app

    url, _ = target(address, force=force, verb="registry --serve")
    check_app(url, serve)
    return url


@registry_app.command("promote")
def registry_promote(
    version: str, stage: Annotated[str, typer.Argument(help="staging | production")],
    registry: RegistryOpt = "registry", task: TaskOpt = "recommend",
    serve: ServeOpt = None, address: AddressOpt = None, force: ForceOpt = False,
) -> None:
    """Point a stage at a version (one atomic write); with --serve, the running app serves it too."""
    url = _serve_target(serve, address, force)
    reg = Registry(registry)
    before = reg.stage(task, stage)
    p = reg.promote(task, version, stage)
    console.print(f"{task}: {stage} -> {p.version}")
    if serve is not None and url is not None:
        _serve_stage(reg, serve, url, task, stage, p.version, before.version if before else None)


@registry_app.command("rollback")
def registry_rollback(
    stage: Annotated[str, typer.Argument(help="staging | production")],
    registry: RegistryOpt = "registry", task: TaskOpt = "recommend",
    serve: ServeOpt = None, address: AddressOpt = None, force: ForceOpt = False,
) -> None:
    """Point a stage back at the version it held before; with --serve, the running app serves it too."""
    url = _serve_target(serve, address, force)
    reg = Registry(registry)
    before = reg.stage(task, stage)
    p = reg.rollback(task, stage)
    console.print(f"{task}: {stage} -> {p.version} (rolled back)")
    if serve is not None and url is not None:
        _serve_stage(reg, serve, url, task, stage, p.version, before.version if before else None)
