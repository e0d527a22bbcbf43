"""`ecomine data profile | build | synth`: read, clean, profile and build features from an event log.

A typer sub-app that `ecomine.cli.main` mounts as `ecomine data`; the work is `ecomine.data`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ecomine.cli._common import CliError, console

__all__ = ["data_app"]

data_app = typer.Typer(help="Read, clean, profile and build features from event logs.", no_args_is_help=True)


def _load_data_spec(spec: str):
    from ecomine.datasets import resolve_data_spec_path
    from ecomine.specs import DataSpec, load_spec

    return load_spec(resolve_data_spec_path(spec), DataSpec)



@data_app.command("profile")
def data_profile(
    spec: Annotated[str, typer.Argument(help="DataSpec YAML path, or a preset: online-retail")],
    json_out: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Read and clean a log; show rows read, users, items, span, events and drops by reason."""
    from ecomine.data.cleaning import load_events

    data_spec = _load_data_spec(spec)
    _, report = load_events(data_spec)
    if json_out:
        typer.echo(report.model_dump_json(indent=2))
        return
    console.print(_report_table(report))


def _report_table(report) -> Table:
    t = Table(title=f"data profile: {report.name}", show_header=True, header_style="bold")
    t.add_column("what")
    t.add_column("value", justify="right")
    for s in report.sources:
        t.add_row(f"rows read: {Path(s.uri).name}", f"{s.rows_read:,}")
    t.add_row("rows read (total)", f"{report.rows_read:,}")
    t.add_row("rows after overlap de-duplication", f"{report.rows_after_overlap:,}")
    for reason, n in report.dropped.items():
        t.add_row(f"[red]dropped: {reason}[/]", f"{n:,}")
    for what, n in report.changed.items():
        t.add_row(f"[yellow]changed: {what}[/]", f"{n:,}")
    t.add_row("[bold]rows kept[/]", f"[bold]{report.rows_out:,}[/]")
    t.add_row("users / items / orders", f"{report.users:,} / {report.items:,} / {report.orders:,}")
    span = f"{report.first_ts:%Y-%m-%d %H:%M} → {report.last_ts:%Y-%m-%d %H:%M}" if report.first_ts else "-"
    t.add_row("span (UTC)", span)
    for ev, n in report.events.items():
        t.add_row(f"events: {ev}", f"{n:,}")
    t.add_row("seconds", f"{report.seconds:.2f}")
    return t


@data_app.command("build")
def data_build(
    spec: Annotated[str, typer.Argument(help="DataSpec YAML path, or a preset: online-retail")],
    out: Annotated[str, typer.Option(help="output folder or s3:// prefix (must be new or empty)")],
    engine: Annotated[Optional[str], typer.Option(
        help="local (polars in this process) | ray (cleaning through Ray Data; joins RAY_ADDRESS, "
             "else a local Ray); default: the spec's `engine`, else local")] = None,
) -> None:
    """Clean the log and write every feature table as parquet (all or nothing)."""
    from ecomine.data.build import ENGINES, write_features

    if engine is not None and engine not in ENGINES:
        raise CliError(f"--engine: {engine!r} is not one of {', '.join(ENGINES)}")
    rows, report = write_features(_load_data_spec(spec), out, engine=engine)
    t = Table(title=f"features of {report.name} -> {out}")
    t.add_column("table")
    t.add_column("rows", justify="right")
    for name, n in rows.items():
        t.add_row(name, f"{n:,}")
    console.print(t)


@data_app.command("synth")
def data_synth(
    out: Annotated[str, typer.Option(help="output folder")],
    users: Annotated[int, typer.Option(min=1)] = 1000,
    items: Annotated[int, typer.Option(min=2)] = 300,
    days: Annotated[int, typer.Option(min=7)] = 365,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Write the seeded synthetic log (events + ground truth) to a folder."""
    from ecomine.datasets.synthetic import SynthParams, describe, generate, write

    log = generate(SynthParams(users=users, items=items, days=days, seed=seed))
    paths = write(log, out)
    summary = describe(log)
    console.print(f"[green]wrote[/] {len(paths)} files to {out}: " + ", ".join(f"{k}={v}" for k, v in summary.items() if not isinstance(v, dict)))
