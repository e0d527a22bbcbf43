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

from ecomine import specs, storage
from ecomine.cli import (
    bench,
    data,
    ensemble,
    explain,
    monitor,
    registry,
    retrain,
    score,
    serve,
)
from ecomine.cli._common import (
    CliError,
    RegistryOpt,
    TaskOpt,
    console,
    err_console,
    parse_overrides,
)
from ecomine.registry import Registry, is_ensemble
from ecomine.specs import SpecError, TrainSpec, load_spec

__all__ = ["app", "main"]

app = typer.Typer(
    name="ecomine",
    help="Declarative model-serving platform on Ray for e-commerce demand mining.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
for sub, name in ((data.data_app, "data"), (registry.registry_app, "registry"), (ensemble.ensemble_app, "ensemble"),
                  (bench.bench_app, "bench"), (serve.serve_app, "serve")):
    app.add_typer(sub, name=name)
for command in (retrain.retrain, monitor.monitor, score.score, explain.explain):
    app.command(command.__name__)(command)


def _known_errors() -> tuple[type[BaseException], ...]:
    from ecomine.data.readers import DataError
    from ecomine.models.text_encoder import EncoderNotFound

    errors: list[type[BaseException]] = [CliError, SpecError, DataError, EncoderNotFound]
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


@app.command()
def schema(
    kind: Annotated[str, typer.Argument(help="spec kind: data (more as they land) or all")] = "all",
) -> None:
    """Print the JSON Schema of the specs (for editor completion of the YAML)."""
    models = specs.spec_models()
    if kind != "all" and kind not in models:
        raise CliError(f"unknown spec kind {kind!r}; choose one of {sorted(models)} or all")
    chosen = models if kind == "all" else {kind: models[kind]}
    out = {k: m.model_json_schema(by_alias=True) for k, m in chosen.items()}
    typer.echo(json.dumps(out if kind == "all" else out[kind], indent=2))


@app.command()
def train(
    spec: Annotated[Path, typer.Argument(help="TrainSpec YAML")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="override a field: optim.lr=3e-4")] = None,
    address: Annotated[Optional[str], typer.Option(help="Ray cluster address (default: start a local Ray)")] = None,
    report: Annotated[Optional[Path], typer.Option(help="also write the evaluation report JSON here")] = None,
    baseline: Annotated[Optional[str], typer.Option(
        help="fit this non-neural recommender instead (item_knn | most_popular | user_history | recent_history)")] = None,
) -> None:
    """Fine-tune through Ray Train, evaluate on the test split beside baselines, register."""
    from ecomine.ensemble.trained import train_version
    from ecomine.train.reports import report_json
    from ecomine.train.runner import run_baseline
    from ecomine.train.tasks import get_task

    train_spec = load_spec(spec, TrainSpec, overrides=parse_overrides(set_ or []))
    if baseline is not None:
        outcome = run_baseline(train_spec, baseline)
    else:
        outcome = train_version(train_spec, ray_address=address, console=console)
    console.print(get_task(train_spec.task).format_report(outcome.results, title=f"{outcome.run_name}: test split"))
    if report is not None:
        storage.write_json(str(report), report_json(outcome.results))
    where = f"registered {train_spec.task}/{outcome.version} in {outcome.registry}" if outcome.version else "not registered"
    _print_time_to_quality(outcome, train_spec.watch()[0])
    stopped = {"plateau": "validation stopped improving", "budget": "stopped on the optim.max_minutes budget",
               "epochs": "reached optim.epochs"}.get(outcome.stopped_on or "")
    console.print(f"[green]done[/] in {outcome.seconds:.0f}s; best epoch {outcome.best_epoch}"
                  f"{f' ({stopped})' if stopped else ''}; {where}")


def _print_time_to_quality(outcome, metric: str) -> None:
    """Validation metric against minutes of training (also time_to_quality.json in the run and the version)."""
    from rich.table import Table

    rows = outcome.time_to_quality(metric)
    if not rows:
        return
    table = Table(title=f"time to quality: validation {metric} against minutes")
    for col in ("epoch", "minutes", metric, "best so far"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["epoch"]), f"{r['minutes']:.1f}", f"{r[f'val_{metric}']:.4f}", f"{r['best']:.4f}")
    console.print(table)


@app.command()
def evaluate(
    version: Annotated[str, typer.Argument(help="version id, stage (staging/production) or latest")],
    registry: RegistryOpt = "registry",
    task: TaskOpt = "recommend",
) -> None:
    """Re-run a registered version's evaluation report (same spec, same data, same baselines)."""
    from ecomine.train.tasks import get_task

    reg = Registry(registry)
    mv = reg.get(task, version)
    if is_ensemble(mv):
        raise CliError(f"{task}/{mv.version} is an ensemble version: its test report (members and baselines) is "
                       f"metrics.report, see `ecomine registry show {mv.version} --task {task}`")
    folder = reg.fetch(task, mv.version)
    spec = TrainSpec.model_validate(mv.spec)
    impl = get_task(spec.task)
    data = impl.prepare(spec)
    if impl.fingerprint(data) != mv.data_fingerprint:
        console.print("[yellow]warning:[/] the data changed since this version was trained (fingerprint differs)")
    try:
        model = impl.load(folder, spec, data)
    except ValueError as e:
        raise CliError(f"{task}/{mv.version}: {e}") from None
    results = impl.evaluate(model, data, spec)
    console.print(impl.format_report(results, title=f"{task}/{mv.version}: test split"))


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="output folder (summary.json, plots, registry)")] = Path("demo_out"),
    tiny: Annotated[bool, typer.Option("--tiny", help="smallest sizes (what the tests run)")] = False,
    data: Annotated[str, typer.Option(help="synthetic (embedded, the default) or online-retail (the shared files)")] = "synthetic",
) -> None:
    """The whole platform end to end: data, Ray Train (3 tasks), registry, Ray Tune, Ray Serve, client, plots."""
    from ecomine.demo.run import DemoSize, run_demo

    if data not in ("synthetic", "online-retail"):
        raise CliError(f"--data: {data!r} is not one of synthetic, online-retail")
    if tiny and data != "synthetic":
        raise CliError("--tiny runs on the synthetic log only")
    size = DemoSize.tiny() if tiny else DemoSize() if data == "synthetic" else DemoSize.online_retail()
    run_demo(out, size=size, console=console)


@app.command("tune")
def tune_cmd(
    spec: Annotated[Path, typer.Argument(help="TuneSpec YAML (tune/*.yaml)")],
    resume: Annotated[bool, typer.Option("--resume", help="continue an interrupted campaign")] = False,
    address: Annotated[Optional[str], typer.Option(help="Ray cluster address (default: start a local Ray)")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="override a TuneSpec field: num_samples=4")] = None,
) -> None:
    """Run a tuning campaign: Ray Tune over the training path; top-k registered as versions."""
    from ecomine.tuning.campaign import run_campaign

    overrides = parse_overrides(set_ or [])
    out = run_campaign(spec, resume=resume, console=console, ray_address=address, overrides=overrides)
    console.print(
        f"[green]campaign {out.name}[/]: {out.trials} trials ({out.stopped_early} stopped early); "
        f"best {out.best}; registered {out.versions}; results {out.results_parquet}; plot {out.plot_png}"
    )
    if out.errored:
        err_console.print(f"[yellow]warning:[/] {out.errored} trial(s) failed; their errors are in {out.results_parquet} (column error)")
    from ecomine.tuning.campaign import load_campaign

    campaign = load_campaign(spec, overrides)
    if campaign.spec.ensemble is not None:
        from ecomine.ensemble.build import campaign_ensemble

        if len(out.versions) < 2:
            raise CliError(f"{spec}: ensemble: the campaign registered {len(out.versions)} version(s); need 2 or more")
        ens = campaign_ensemble(campaign, out.versions, console=console)
        console.print(ens.report)
        console.print(f"registered {campaign.base.task}/{ens.version} (kind ensemble) from the top "
                      f"{len(ens.members)} trials: " + ", ".join(f"{m['version']} w {m['weight']:.2f}" for m in ens.members))


if __name__ == "__main__":  # pragma: no cover
    main()
