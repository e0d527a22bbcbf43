"""`ecomine serve up | down | status | check | hash-key`: run and manage Serve configs.

A typer sub-app that ``ecomine.cli.main.main`` mounts as ``ecomine serve``; the checks and the
cluster calls it makes are ``ecomine.serve.control``'s. ``up --blocking`` is ``serve run
CONFIG`` (a local Ray unless ``--address``/``RAY_ADDRESS`` names one; Ctrl-C or ``serve down`` ends it);
plain ``up`` is ``serve deploy CONFIG`` to a running cluster's dashboard, then waits until
the applications run (or says why they failed). A KubeRay RayService file is accepted too:
its ``serveConfigV2`` is what gets checked and deployed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from ecomine.cli._common import console
from ecomine.serve.control import (
    ECOMINE_IMPORT_PATH,
    ServeConfigError,
    app_statuses,
    dashboard_address,
    get_models,
    load_serve_config,
    models_url,
    read_serve_config,
    refusal_line,
    refused_arms,
    serve_client,
    summarize,
    validate_serve_config,
    wait_running_on,
)

__all__ = ["serve_app", "up", "down", "status", "check", "hash_key"]

serve_app = typer.Typer(
    help="Run a Serve config: `up` (serve deploy / serve run), `down`, `status`, `check`, `hash-key`.",
    no_args_is_help=True,
)

AddressOpt = Annotated[
    Optional[str],
    typer.Option("--address", "-a", help="Ray dashboard URL (default $RAY_DASHBOARD_ADDRESS or http://127.0.0.1:8265)"),
]


@serve_app.command("hash-key")
def hash_key() -> None:
    """Read an API key on stdin and print what auth.api_keys takes for it ('sha256:<hex>')."""
    import sys

    from ecomine.serve.security import key_hash

    key = sys.stdin.readline().strip()
    if not key:
        raise ServeConfigError("hash-key: no key on stdin (echo -n KEY | ecomine serve hash-key)")
    typer.echo(key_hash(key))


NoRegistryOpt = Annotated[
    bool, typer.Option("--no-registry", help="check the schema and args only; do not resolve versions in the registry")
]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="act on an --address that `ecomine serve up` did not deploy to")
]


def _plans(config: Path, schema: Any) -> list[Any]:
    """Every ecomine app's versions resolved here (ServeConfigError: one line naming app, task, arm, reason)."""
    from ecomine.serve.preflight import preflight

    return preflight(schema, str(config))


@serve_app.command("check")
def check(
    config: Annotated[Path, typer.Argument(help="Serve config YAML or KubeRay RayService")],
    no_registry: NoRegistryOpt = False,
) -> None:
    """Validate a config (Ray's schema + ecomine's AppArgs) and resolve every version it names, without deploying it."""
    schema = load_serve_config(config)
    plans = {} if no_registry else {p.app: p for p in _plans(config, schema)}
    for app in schema.applications:
        console.print(f"[green]ok[/] {config}: application [bold]{app.name}[/] at {app.route_prefix} ({app.import_path})")
        plan = plans.get(app.name)
        if plan is not None:
            console.print(f"   registry {plan.registry}")
            for line in plan.lines():
                console.print(f"   {line}", markup=False)


@serve_app.command("up")
def up(
    config: Annotated[Path, typer.Argument(help="Serve config YAML or KubeRay RayService")],
    address: AddressOpt = None,
    blocking: Annotated[bool, typer.Option("--blocking", help="run in this process like `serve run` (Ctrl-C or `ecomine serve down` stops)")] = False,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="wait until the applications run")] = True,
    timeout: Annotated[float, typer.Option(help="seconds to wait for RUNNING")] = 300.0,
    no_registry: NoRegistryOpt = False,
) -> None:
    """Deploy CONFIG to a running Ray cluster (`serve deploy`), or run it here with --blocking (`serve run`).

    Every version is resolved first (as `serve check` does); a build that still fails on the
    cluster ends the wait with its one-line reason. Where it deployed is recorded for
    `serve status`, `serve down` and `retrain --serve`.
    """
    from ecomine.serve.preflight import pin_paths

    raw = read_serve_config(config)
    pinned = pin_paths(raw, None if blocking and not (address or os.environ.get("RAY_ADDRESS")) else dashboard_address(address))
    schema = validate_serve_config(pinned, str(config))
    plans = [] if no_registry else _plans(config, schema)
    names = [app.name for app in schema.applications]
    if blocking:
        _up_blocking(config, schema, plans, address, timeout)
        return
    with serve_client(address) as client:
        sent = time.time()
        client.deploy_applications(schema.model_dump(exclude_unset=True, mode="json"))
        url = dashboard_address(address)
        _remember(url, config, schema, plans, pid=None)
        console.print(f"sent {config} to {url}: {', '.join(names)}")
        if wait:
            apps = wait_running_on(client, names, timeout)
            ecomine_apps = [a.name for a in schema.applications if a.import_path == ECOMINE_IMPORT_PATH]
            _raise_refused(client, ecomine_apps, sent)
            for name in names:
                console.print(f"[green]RUNNING[/] {name} at {apps[name].get('route_prefix')}")


def _remember(url: str, config: Path, schema: Any, plans: list[Any], pid: int | None) -> None:
    from ecomine.serve.deployed import Deployment, remember

    remember(Deployment(address=url, apps=[a.name for a in schema.applications], config=str(config), pid=pid,
                        registries={p.app: p.registry for p in plans}))


def _up_blocking(config: Path, schema: Any, plans: list[Any], address: str | None, timeout: float) -> None:
    """`serve run CONFIG`, with an end: deploy through the dashboard of a Ray started here (or joined), wait
    until RUNNING (a failed build ends it with one line), then serve until Ctrl-C or until `ecomine serve
    down` deletes the applications. A Ray started here is shut down on the way out; on a joined cluster
    only this config's applications are deleted."""
    from ecomine.cluster.session import dashboard_url, ensure_ray, ray_address
    from ecomine.serve.deployed import forget
    from ecomine.serve.launch import apply_serve_env

    names = [app.name for app in schema.applications]
    here = ray_address(address) == "local"
    if here:  # the Ray started here serves in Ray's high-throughput mode (ecomine.serve.launch)
        apply_serve_env()
    started = ensure_ray(address)  # a local one on a free dashboard port
    url = dashboard_url()
    client = serve_client(url)
    recorded = False
    try:
        sent = time.time()
        client.deploy_applications(schema.model_dump(exclude_unset=True, mode="json"))
        apps = wait_running_on(client, names, timeout)
        _raise_refused(client, [a.name for a in schema.applications if a.import_path == ECOMINE_IMPORT_PATH], sent)
        _remember(url, config, schema, plans, pid=os.getpid())
        recorded = True
        for name in names:
            console.print(f"[green]RUNNING[/] {name} at {apps[name].get('route_prefix')}")
        console.print(f"serving {config} from this process (dashboard {url}); Ctrl-C or `ecomine serve down` stops it")
        while True:
            time.sleep(1.0)
            live = {n for n, a in app_statuses(client.get_serve_details()).items() if a.get("status") != "DELETING"}
            if not set(names) & live:
                console.print("the applications were deleted (`ecomine serve down`): stopping")
                break
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        if recorded:
            forget(url, names)
        _stop_blocking(client, names, started)
        client.close()


def _stop_blocking(client: Any, names: list[str], started: bool) -> None:
    """A Ray started here goes down whole (its Serve actors with it): `serve.shutdown()` first would
    wait on the controller's graceful shutdown, 30 s and a warning on these machines, for nothing.
    On a joined cluster only this config's applications are deleted."""
    import ray

    if started:
        ray.shutdown()
        return
    try:
        _delete_apps(client, names)
    except Exception as exc:  # the way out must not hide why we are leaving
        console.print(f"[yellow]could not delete {', '.join(names)}[/]: {type(exc).__name__}: {exc}")


def _delete_apps(client: Any, names: list[str]) -> list[str]:
    """Delete ``names`` by deploying every other application's config (seconds, where deleting them all
    through `serve shutdown` waits on the controller's graceful shutdown); returns those deleted."""
    details = client.get_serve_details()
    apps = app_statuses(details)
    gone = [n for n in names if n in apps]
    if gone:
        remaining = [a["deployed_app_config"] for n, a in apps.items() if n not in names and a.get("deployed_app_config")]
        config = {k: v for k, v in details.items() if k in ("proxy_location", "http_options", "grpc_options")}
        config["applications"] = remaining
        client.deploy_applications(config)
    return gone


def _raise_refused(client: Any, names: list[str], since: float, settle_s: float = 3.0) -> None:
    """ServeConfigError naming the file when an arm refused the config just sent. A refused
    user_config leaves the app RUNNING (the old version serves on), so ask the app itself;
    replicas reconfigure a moment after the deploy, hence a short look for a refusal."""
    deadline = time.monotonic() + settle_s
    while True:
        late = time.monotonic() > deadline
        details = client.get_serve_details()
        for name in names:
            models = get_models(models_url(details, name))
            # a refusal of this config at once; an older one that is still there after the settle
            # time means this config did not replace what was refused (an unchanged user_config)
            refused = refused_arms(models, None if late else since) if models else []
            if refused:
                raise ServeConfigError(refusal_line(name, refused[0]))
        if late:
            return
        time.sleep(0.5)


@serve_app.command("down")
def down(
    address: AddressOpt = None,
    app: Annotated[Optional[str], typer.Option("--app", help="delete only this application (default: those `serve up` deployed)")] = None,
    every: Annotated[bool, typer.Option("--all", help="shut every Serve application on the cluster down (`serve shutdown`)")] = False,
    force: ForceOpt = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait for a --blocking `serve up` to end")] = 30.0,
) -> None:
    """Delete what `ecomine serve up` deployed (or --app, or --all), and end the --blocking process serving it."""
    from ecomine.serve.deployed import target

    url, record = target(address, force=force, verb="serve down")
    with serve_client(url) as client:
        _down(client, url, record, app, every, timeout)


def _down(client: Any, url: str, record: Any, app: str | None, every: bool, timeout: float) -> None:
    from ecomine.serve.deployed import forget, process_alive

    if every:
        client.delete_applications()
        forget(url)
        console.print(f"deleted every Serve application at {url}")
        return
    names = [app] if app else (record.apps if record else [])
    if not names:
        raise ServeConfigError(f"serve down: nothing recorded at {url}; name one with --app NAME or use --all")
    gone = _delete_apps(client, names)
    if app and not gone:
        running = ", ".join(sorted(app_statuses(client.get_serve_details()))) or "none"
        raise ServeConfigError(f"--app {app!r}: no such application at {url} (running: {running})")
    forget(url, names)
    console.print(f"deleted {', '.join(gone) or 'nothing (already gone)'} at {url}")
    pid = record.pid if record else None
    if pid and process_alive(pid) and pid != os.getpid():
        deadline = time.monotonic() + timeout
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.25)
        if process_alive(pid):
            raise ServeConfigError(f"serve down: the --blocking `serve up` (pid {pid}) is still running after {timeout:g} s")
        console.print(f"the --blocking `serve up` (pid {pid}) has stopped")


@serve_app.command("status")
def status(
    address: AddressOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    force: ForceOpt = False,
) -> None:
    """Applications and deployments where `ecomine serve up` deployed, with states, replica counts and degraded arms."""
    from ecomine.serve.deployed import target

    url, record = target(address, force=force, verb="serve status")
    with serve_client(url) as client:
        details = client.get_serve_details()
    apps = app_statuses(details)
    arms = {
        name: get_models(models_url(details, name)) for name, app in apps.items()
        if (app.get("deployed_app_config") or {}).get("import_path") == ECOMINE_IMPORT_PATH
        and app.get("status") == "RUNNING"
    }
    summary = summarize(apps, arms)
    if as_json:
        import json

        typer.echo(json.dumps(summary, indent=2))
        return
    if record is not None:
        registries = "; ".join(f"{a}: {r}" for a, r in record.registries.items())
        console.print(f"{url}: deployed by `ecomine serve up {record.config}`"
                      + (f" (pid {record.pid}, --blocking)" if record.pid else "")
                      + (f"; registry {registries}" if registries else ""), highlight=False)
    if not apps:
        console.print("no Serve applications")
        return
    table = Table("app", "status", "deployment", "state", "replicas", "message")
    for column in table.columns[:5]:
        column.no_wrap = True
    for name, app in summary.items():
        first = True
        for dname, dep in app["deployments"].items():
            table.add_row(
                name if first else "", str(app["status"]) if first else "", dname, str(dep["status"]),
                f"{dep['running']}/{dep['replicas']}", " ".join(dep["message"].split())[:80],
            )
            first = False
        if first:
            table.add_row(name, str(app["status"]), "", "", "", " ".join(app["message"].split())[:80])
    console.print(table)
    for name, app in summary.items():
        for refused in app.get("refused", []):
            console.print(f"[yellow]degraded[/] {escape(refusal_line(name, refused))}", highlight=False)
        for line in app.get("unavailable", []):
            console.print(f"[yellow]degraded[/] application {name!r}: {escape(line)}", highlight=False)
