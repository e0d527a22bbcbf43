"""The `ecomine` command line (typer + rich).

The outermost layer: it parses arguments, calls the package, and turns every
known error into ONE line on stderr with exit code 2 (no traceback). Heavy
imports (Ray, torch) happen inside the commands that need them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["app", "main"]

app = typer.Typer(
    name="ecomine",
    help="Declarative model-serving platform on Ray for e-commerce demand mining.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Read, clean, profile and build features from event logs.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console()
err_console = Console(stderr=True)


class CliError(Exception):
    """An error the CLI reports as one line (bad arguments, unusable input)."""


def _known_errors() -> tuple[type[BaseException], ...]:
    from ecomine.data.readers import DataError
    from ecomine.specs import SpecError

    errors: list[type[BaseException]] = [CliError, SpecError, DataError]
    for mod, name in (("ecomine.storage", "StorageError"), ("ecomine.registry", "RegistryError")):
        try:
            errors.append(getattr(__import__(mod, fromlist=[name]), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def main() -> None:
    """Console-script entry point: known errors become one line and exit code 2."""
    try:
        app()
    except _known_errors() as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        err_console.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)


def _load_data_spec(spec: str):
    from ecomine.datasets import resolve_data_spec_path
    from ecomine.specs import DataSpec, load_spec

    return load_spec(resolve_data_spec_path(spec), DataSpec)


@app.command()
def schema(
    kind: Annotated[str, typer.Argument(help="spec kind: data (more as they land) or all")] = "all",
) -> None:
    """Print the JSON Schema of the specs (for editor completion of the YAML)."""
    from ecomine import specs

    models = specs.spec_models()
    if kind != "all" and kind not in models:
        raise CliError(f"unknown spec kind {kind!r}; choose one of {sorted(models)} or all")
    chosen = models if kind == "all" else {kind: models[kind]}
    out = {k: m.model_json_schema(by_alias=True) for k, m in chosen.items()}
    typer.echo(json.dumps(out if kind == "all" else out[kind], indent=2))


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


if __name__ == "__main__":  # pragma: no cover
    main()
