"""`ecomine ensemble build`: fit an ensemble of registered versions on validation, report it on test, register it.

A typer sub-app that `ecomine.cli.main` mounts as `ecomine ensemble`; the work is `ecomine.ensemble.build`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ecomine import storage
from ecomine.cli._common import console, parse_overrides
from ecomine.specs import EnsembleSpec, load_spec

__all__ = ["ensemble_app"]

ensemble_app = typer.Typer(help="Ensembles of registered versions, fitted on validation and registered.", no_args_is_help=True)


@ensemble_app.command("build")
def ensemble_build(
    spec: Annotated[Path, typer.Argument(help="EnsembleSpec YAML (see ensembles/*.yaml)")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="override a field: --set fit.method=uniform")] = None,
    registry: Annotated[Optional[str], typer.Option("--registry", help="registry root (overrides the spec's)",
                                                    envvar="ECOMINE_REGISTRY")] = None,
    out: Annotated[Optional[Path], typer.Option(help="write the report JSON here")] = None,
) -> None:
    """Fit an ensemble of registered versions on their validation split, report it on test, register it."""
    from ecomine.ensemble.build import build_ensemble

    overrides = parse_overrides(set_ or [])
    if registry:
        overrides["registry"] = registry
    ens = load_spec(spec, EnsembleSpec, overrides=overrides)
    outcome = build_ensemble(ens, console=console, source=str(spec))
    console.print(outcome.report)
    for m in outcome.members:
        console.print(f"  member {m['version']}: weight {m['weight']:.3f}, temperature {m['temperature']:.3g}")
    from ecomine.ensemble.build import versus_best_member

    vs = versus_best_member(ens.task, outcome.results)
    for r in vs:
        console.print(f"{r['metric']}: ensemble {r['ensemble']:.4f} vs best member {r['member']:.4f} -> "
                      f"{r['ratio']:.3f}x ({r['better']} is better)")
    console.print(f"registered {ens.task}/{outcome.version} (kind ensemble)"
                  + (f", promoted to {ens.promote}" if ens.promote else ""))
    if out is not None:
        from ecomine.train.reports import report_json

        storage.write_json(str(out), {"version": outcome.version, "members": outcome.members, "versus_best_member": vs,
                                      "results": report_json(outcome.results)})
