"""`ecomine bench quality | serve`: benchmarks that print figures (never timed tests).

A typer sub-app that `ecomine.cli.main` mounts as `ecomine bench`; `serve` runs the repository's
`benchmarks/serve_bench.py`, which ships with the repository, not the wheel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ecomine import storage
from ecomine.cli._common import CliError, TaskOpt, console, parse_overrides
from ecomine.specs import TrainSpec, load_spec

__all__ = ["bench_app"]

bench_app = typer.Typer(help="Benchmarks that print figures (not timed tests).", no_args_is_help=True)


@bench_app.command("quality")
def bench_quality(
    task: TaskOpt = "recommend",
    data: Annotated[str, typer.Option(help="DataSpec YAML or preset (online-retail)")] = "online-retail",
    spec: Annotated[Optional[Path], typer.Option(help="TrainSpec YAML (default: benchmarks/recommend_online_retail.yaml)")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="override a field")] = None,
    out: Annotated[Optional[Path], typer.Option(help="write the report JSON here")] = None,
) -> None:
    """Train on a data set and print the model beside the baselines with ratios (both protocols)."""
    from ecomine.train.recommend_eval import MODEL_NAME, best_baseline
    from ecomine.train.recommend_metrics import format_report
    from ecomine.train.reports import report_json
    from ecomine.train.runner import run_training

    if task != "recommend":
        raise CliError(f"--task {task!r}: only recommend has a quality benchmark so far")
    path = spec or Path(__file__).resolve().parents[2] / "benchmarks" / "recommend_online_retail.yaml"
    overrides = {"data": {"kind": "spec", "spec": data}, **parse_overrides(set_ or [])}
    train_spec = load_spec(path, TrainSpec, overrides=overrides)
    outcome = run_training(train_spec, console=console)
    console.print(format_report(outcome.results, title=f"quality: {task} on {data}"))
    summary = {}
    for protocol in ("all_items", "new_items"):
        name, value = best_baseline(outcome.results, protocol)
        model = outcome.results[MODEL_NAME][protocol]["NDCG@10"]
        summary[protocol] = {"model_ndcg@10": model, "best_baseline": name, "baseline_ndcg@10": value, "ratio": model / value}
        target = 1.6 if protocol == "all_items" else 1.5
        console.print(f"{protocol}: model NDCG@10 {model:.4f} vs {name} {value:.4f} -> ratio {model / value:.2f} (target >= {target})")
    if out is not None:
        storage.write_json(str(out), {"results": report_json(outcome.results), "summary": summary,
                                      "best_epoch": outcome.best_epoch, "seconds": outcome.seconds, "version": outcome.version})


@bench_app.command(
    "serve", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def bench_serve(ctx: typer.Context) -> None:
    """wrk load on /v1/recommend: ecomine vs uvicorn and hand-written Serve apps (see benchmarks/serve_bench.py --help)."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "serve_bench.py"
    if not path.exists():
        raise CliError(f"{path}: the serve benchmark ships with the repository, not the wheel")
    spec = importlib.util.spec_from_file_location("ecomine_serve_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    raise typer.Exit(module.main(list(ctx.args)))
