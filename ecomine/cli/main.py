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
registry_app = typer.Typer(help="Model versions and stages (staging / production).", no_args_is_help=True)
app.add_typer(registry_app, name="registry")
bench_app = typer.Typer(help="Benchmarks that print figures (not timed tests).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
ensemble_app = typer.Typer(help="Ensembles of registered versions, fitted on validation and registered.", no_args_is_help=True)
app.add_typer(ensemble_app, name="ensemble")


# Verb groups that live in modules of their own ("module:typer attribute" -> `ecomine <name> ...`);
# each imports only typer at import time (Ray and torch inside its commands).
_MOUNTED = {
    "serve": "ecomine.cli.serve:serve_app",
}
# Single commands that live in modules of their own ("module:function" -> `ecomine <name> ARGS`).
_COMMANDS: dict[str, str] = {
    "retrain": "ecomine.cli.retrain:retrain",
    "monitor": "ecomine.cli.monitor:monitor",
    "score": "ecomine.cli.score:score",
    "explain": "ecomine.cli.explain:explain",
}


def _mount() -> None:
    from importlib import import_module

    def load(target: str):
        module, attr = target.split(":")
        return getattr(import_module(module), attr)

    for name, target in _MOUNTED.items():
        app.add_typer(load(target), name=name)
    for name, target in _COMMANDS.items():
        app.command(name)(load(target))


_mount()

RegistryOpt = Annotated[str, typer.Option("--registry", help="registry root: folder or s3:// URI", envvar="ECOMINE_REGISTRY")]
TaskOpt = Annotated[str, typer.Option("--task", help="recommend | demand | risk")]

# Reports are wide tables: when output goes to a file or CI log (no terminal to measure),
# rich would cut them at 80 columns and drop the figures.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)


class CliError(Exception):
    """An error the CLI reports as one line (bad arguments, unusable input)."""


def _known_errors() -> tuple[type[BaseException], ...]:
    from ecomine.data.readers import DataError
    from ecomine.models.text_encoder import EncoderNotFound
    from ecomine.specs import SpecError

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


def _parse_overrides(pairs: list[str]) -> dict[str, object]:
    """`--set optim.lr=3e-4` -> {"optim.lr": 0.0003} (values parsed as YAML scalars)."""
    import yaml

    out: dict[str, object] = {}
    for pair in pairs:
        if "=" not in pair:
            raise CliError(f"--set {pair!r}: expected dotted.path=value")
        key, value = pair.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


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
    from ecomine.specs import TrainSpec, load_spec
    from ecomine.train.reports import report_json
    from ecomine.train.runner import run_baseline, run_training
    from ecomine.train.tasks import get_task

    train_spec = load_spec(spec, TrainSpec, overrides=_parse_overrides(set_ or []))
    if baseline is not None:
        outcome = run_baseline(train_spec, baseline)
    else:
        outcome = run_training(train_spec, ray_address=address, console=console)
    console.print(get_task(train_spec.task).format_report(outcome.results, title=f"{outcome.run_name}: test split"))
    if report is not None:
        from ecomine import storage

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
    from ecomine.registry import Registry
    from ecomine.specs import TrainSpec
    from ecomine.train.tasks import get_task

    from ecomine.registry import is_ensemble

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
) -> None:
    """Run a tuning campaign: Ray Tune over the training path; top-k registered as versions."""
    from ecomine.tuning.campaign import run_campaign

    out = run_campaign(spec, resume=resume, console=console, ray_address=address)
    console.print(
        f"[green]campaign {out.name}[/]: {out.trials} trials ({out.stopped_early} stopped early); "
        f"best {out.best}; registered {out.versions}; results {out.results_parquet}; plot {out.plot_png}"
    )
    if out.errored:
        err_console.print(f"[yellow]warning:[/] {out.errored} trial(s) failed; their errors are in {out.results_parquet} (column error)")
    from ecomine.tuning.campaign import load_campaign

    campaign = load_campaign(spec)
    if campaign.spec.ensemble is not None:
        from ecomine.ensemble.build import campaign_ensemble

        if len(out.versions) < 2:
            raise CliError(f"{spec}: ensemble: the campaign registered {len(out.versions)} version(s); need 2 or more")
        ens = campaign_ensemble(campaign, out.versions, console=console)
        console.print(ens.report)
        console.print(f"registered {campaign.base.task}/{ens.version} (kind ensemble) from the top "
                      f"{len(ens.members)} trials: " + ", ".join(f"{m['version']} w {m['weight']:.2f}" for m in ens.members))


@registry_app.command("list")
def registry_list(registry: RegistryOpt = "registry", task: Annotated[Optional[str], typer.Option()] = None) -> None:
    """Versions with their stages, tags and headline metric."""
    from ecomine.registry import Registry

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
    from ecomine.registry import Registry

    typer.echo(json.dumps(Registry(registry).show(task, version), indent=2))


@registry_app.command("promote")
def registry_promote(
    version: str, stage: Annotated[str, typer.Argument(help="staging | production")],
    registry: RegistryOpt = "registry", task: TaskOpt = "recommend",
) -> None:
    """Point a stage at a version (one atomic write)."""
    from ecomine.registry import Registry

    p = Registry(registry).promote(task, version, stage)
    console.print(f"{task}: {stage} -> {p.version}")


@registry_app.command("rollback")
def registry_rollback(
    stage: Annotated[str, typer.Argument(help="staging | production")],
    registry: RegistryOpt = "registry", task: TaskOpt = "recommend",
) -> None:
    """Point a stage back at the version it held before."""
    from ecomine.registry import Registry

    p = Registry(registry).rollback(task, stage)
    console.print(f"{task}: {stage} -> {p.version} (rolled back)")


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
    from ecomine.specs import EnsembleSpec, load_spec

    overrides = _parse_overrides(set_ or [])
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
        from ecomine import storage
        from ecomine.train.reports import report_json

        storage.write_json(str(out), {"version": outcome.version, "members": outcome.members, "versus_best_member": vs,
                                      "results": report_json(outcome.results)})


@bench_app.command("quality")
def bench_quality(
    task: TaskOpt = "recommend",
    data: Annotated[str, typer.Option(help="DataSpec YAML or preset (online-retail)")] = "online-retail",
    spec: Annotated[Optional[Path], typer.Option(help="TrainSpec YAML (default: benchmarks/recommend_online_retail.yaml)")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="override a field")] = None,
    out: Annotated[Optional[Path], typer.Option(help="write the report JSON here")] = None,
) -> None:
    """Train on a data set and print the model beside the baselines with ratios (both protocols)."""
    from ecomine.specs import TrainSpec, load_spec
    from ecomine.train.recommend_eval import MODEL_NAME, best_baseline
    from ecomine.train.reports import report_json
    from ecomine.train.recommend_metrics import format_report
    from ecomine.train.runner import run_training

    if task != "recommend":
        raise CliError(f"--task {task!r}: only recommend has a quality benchmark so far")
    path = spec or Path(__file__).resolve().parents[1] / "benchmarks" / "recommend_online_retail.yaml"
    overrides = {"data": {"kind": "spec", "spec": data}, **_parse_overrides(set_ or [])}
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
        from ecomine import storage

        storage.write_json(str(out), {"results": report_json(outcome.results), "summary": summary,
                                      "best_epoch": outcome.best_epoch, "seconds": outcome.seconds, "version": outcome.version})


@bench_app.command(
    "serve", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def bench_serve(ctx: typer.Context) -> None:
    """wrk load on /v1/recommend: ecomine vs uvicorn and hand-written Serve apps (see benchmarks/serve_bench.py --help)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "serve_bench.py"
    if not path.exists():
        raise CliError(f"{path}: the serve benchmark ships with the repository, not the wheel")
    spec = importlib.util.spec_from_file_location("ecomine_serve_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    raise typer.Exit(module.main(list(ctx.args)))


if __name__ == "__main__":  # pragma: no cover
    main()
