"""`ecomine score <score.yaml>`: batch scoring of every user, item or order line by a registered version.

An operator's verb mounted by ``ecomine.cli.main``'s ``_COMMANDS``; the work is
``ecomine.score.batch`` (Ray Data, an actor pool, parquet committed all or nothing).
Imports typer and rich only at import time (Ray and torch inside the command).
Bad input (a missing version or input, an unknown field) is one line on stderr,
exit 2, nothing written: checked on the driver before Ray starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ecomine.cli._common import console, err_console, parse_overrides

__all__ = ["score"]


def score(
    spec: Annotated[Path, typer.Argument(help="ScoreSpec YAML (see score_configs/)")],
    address: Annotated[Optional[str], typer.Option(help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="override a field: version=production, actors=2")] = None,
) -> None:
    """Score every user (recommend top-k), item (demand forecasts) or order line (risk) through Ray Data; write parquet."""
    from ecomine.score.batch import ScoreError, plan_scoring, run_scoring
    from ecomine.specs import ScoreSpec, load_spec

    score_spec = load_spec(spec, ScoreSpec, overrides=parse_overrides(set_ or []))  # SpecError: one line from main
    try:
        plan = plan_scoring(score_spec)
        outcome = run_scoring(score_spec, ray_address=address, plan=plan)
    except ScoreError as exc:
        err_console.print(f"[bold red]error:[/] {spec}: {' '.join(str(exc).split())}", highlight=False,
                                   soft_wrap=True)
        raise typer.Exit(2) from None
    t = Table(title=f"ecomine score: {outcome.label} -> {outcome.output}", show_header=False)
    t.add_column("what")
    t.add_column("value", justify="right")
    t.add_row("rows scored", f"{outcome.rows_in:,}")
    t.add_row("rows written", f"{outcome.rows_out:,} in {len(outcome.parts)} part(s)")
    t.add_row("actors x CPUs / GPUs", f"{score_spec.actors} x {score_spec.num_cpus:g} / {score_spec.num_gpus:g}")
    t.add_row("rows/s (Ray Data pipeline)", f"{outcome.rows_per_s:,.0f}")
    t.add_row("seconds (pipeline / total)", f"{outcome.seconds:.1f} / {outcome.total_seconds:.1f}")
    console.print(t)
