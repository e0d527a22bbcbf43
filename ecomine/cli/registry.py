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


@registry_app.command("promote")
def registry_promote(
    version: str, stage: Annotated[str, typer.Argument(help="staging | production")],
    registry: RegistryOpt = "registry", task: TaskOpt = "recommend",
) -> None:
    """Point a stage at a version (one atomic write)."""
    p = Registry(registry).promote(task, version, stage)
    console.print(f"{task}: {stage} -> {p.version}")


@registry_app.command("rollback")
def registry_rollback(
    stage: Annotated[str, typer.Argument(help="staging | production")],
    registry: RegistryOpt = "registry", task: TaskOpt = "recommend",
) -> None:
    """Point a stage back at the version it held before."""
    p = Registry(registry).rollback(task, stage)
    console.print(f"{task}: {stage} -> {p.version} (rolled back)")
