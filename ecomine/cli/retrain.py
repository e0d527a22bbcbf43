"""`ecomine retrain PIPELINE.yaml`: one gated retraining run (or `--rollback`), for people and schedulers.

Mounted by `ecomine.cli.main` (its `_COMMANDS` table); typer only at import, Ray and
torch inside `ecomine.retrain.pipeline`. Exit codes a scheduler can act on: 0 the run
ended (promoted, refused by the gate, or rolled back: the record says which),
1 the challenger's training or the Serve swap failed (champion and Serve
unchanged), 2 bad input (one line naming the field; nothing trained or written).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ecomine.cli._common import console, err_console, parse_overrides

__all__ = ["retrain"]



def retrain(
    pipeline: Annotated[Path, typer.Argument(help="PipelineSpec YAML (`ecomine schema pipeline`)")],
    serve: Annotated[
        Optional[str], typer.Option("--serve", help="a running Serve application to hot-swap (deployed by `ecomine serve up`)")
    ] = None,
    address: Annotated[
        Optional[str], typer.Option("--address", help="Ray dashboard of --serve (default: where `ecomine serve up` deployed)")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="swap on an --address that `ecomine serve up` did not deploy to")
    ] = False,
    do_rollback: Annotated[
        bool, typer.Option("--rollback", help="point the stage back at its previous version (and swap --serve back)")
    ] = False,
    ray_address: Annotated[
        Optional[str], typer.Option("--ray-address", help="Ray cluster to train on (default: $RAY_ADDRESS or a local Ray)")
    ] = None,
    swap_timeout: Annotated[float, typer.Option(help="seconds to wait for Serve to serve the new version")] = 300.0,
    json_out: Annotated[bool, typer.Option("--json", help="print the run record as JSON")] = False,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="override a field: gate.metric=hr@20, train.optim.epochs=2")] = None,
) -> None:
    """Train a challenger on the pipeline's window, gate it against the champion, promote and hot-swap.

    Exit 0: the run ended (promoted, refused or rolled back); 1: training or the swap failed
    (nothing changed); 2: bad input. The record lands under <registry>/_retrain/<name>/.
    """
    import json

    from ecomine.retrain.pipeline import (
        RetrainError,
        ServeTarget,
        rollback,
        run_pipeline,
    )
    from ecomine.specs import PipelineSpec, load_spec

    spec = load_spec(pipeline, PipelineSpec, overrides=parse_overrides(set_ or []))
    target = None
    if serve:
        from ecomine.serve.deployed import target as deployed_target

        target = ServeTarget(serve, deployed_target(address, force=force, verb="retrain --serve")[0], swap_timeout)
    try:
        if do_rollback:
            record = rollback(spec, source=pipeline, serve=target)
        else:
            record = run_pipeline(spec, source=pipeline, serve=target, ray_address=ray_address,
                                  console=None if json_out else console)
    except RetrainError as exc:
        err_console.print(f"[bold red]failed:[/] {' '.join(str(exc).split())}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if json_out:
        typer.echo(json.dumps(record.as_dict(), indent=2, default=str))
        return
    t = Table(title=f"retrain {record.pipeline}: {record.status}", show_header=False)
    t.add_column("what")
    t.add_column("value")
    t.add_row("champion before", str(record.champion))
    if not do_rollback:
        t.add_row("challenger", str(record.challenger))
    t.add_row(f"{record.stage} now", str(record.served))
    if record.gate:
        t.add_row("gate", record.gate["reason"])
    if record.swap:
        t.add_row("serve", f"{record.swap['arm']}: {record.swap['previous']} -> {record.swap['version']} "
                  f"({record.swap['seconds']} s)")
    t.add_row("record", str(record.uri))
    console.print(t)
