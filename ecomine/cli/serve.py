"""`ecomine serve up | down | status | check | hash-key`: run and manage Serve configs.

A typer sub-app that ``ecomine.cli.main.main`` mounts as ``ecomine serve``; the checks and the
cluster calls it makes are ``ecomine.serve.control``'s. ``up --blocking`` is ``serve run
CONFIG`` (a local Ray unless ``--address``/``RAY_ADDRESS`` names one; Ctrl-C stops it);
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
    refusal_line,
    refused_arms,
    serve_client,
    summarize,
    wait_running,
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


@serve_app.command("check")
def check(config: Annotated[Path, typer.Argument(help="Serve config YAML or KubeRay RayService")]) -> None:
    """Validate a config (Ray's schema + ecomine's AppArgs) without deploying it."""
    schema = load_serve_config(config)
    for app in schema.applications:
        console.print(f"[green]ok[/] {config}: application [bold]{app.name}[/] at {app.route_prefix} ({app.import_path})")


@serve_app.command("up")
def up(
    config: Annotated[Path, typer.Argument(help="Serve config YAML or KubeRay RayService")],
    address: AddressOpt = None,
    blocking: Annotated[bool, typer.Option("--blocking", help="run in this process like `serve run` (Ctrl-C stops)")] = False,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="wait until the applications run")] = True,
    timeout: Annotated[float, typer.Option(help="seconds to wait for RUNNING")] = 300.0,
) -> None:
    """Deploy CONFIG to a running Ray cluster (`serve deploy`), or run it here with --blocking (`serve run`)."""
    schema = load_serve_config(config)
    names = [app.name for app in schema.applications]
    if blocking:
        from ray.serve.scripts import cli as ray_serve_cli

        from ecomine.serve.launch import apply_serve_env

        # "local": a Ray of our own, never whichever `ray start` cluster happens to run on this host
        where = address or os.environ.get("RAY_ADDRESS") or "local"
        if where == "local":  # the Ray started here serves in Ray's high-throughput mode (ecomine.serve.launch)
            apply_serve_env()
        args = ["run", str(config), "--address", where]
        console.print(f"running {config} ({', '.join(names)}) in this process; Ctrl-C stops it")
        ray_serve_cli.main(args=args, prog_name="serve", standalone_mode=True)
        return
    client = serve_client(address)
    sent = time.time()
    client.deploy_applications(schema.model_dump(exclude_unset=True, mode="json"))
    console.print(f"sent {config} to {dashboard_address(address)}: {', '.join(names)}")
    if wait:
        apps = wait_running(address, names, timeout)
        ecomine_apps = [a.name for a in schema.applications if a.import_path == ECOMINE_IMPORT_PATH]
        _raise_refused(client, ecomine_apps, sent)
        for name in names:
            console.print(f"[green]RUNNING[/] {name} at {apps[name].get('route_prefix')}")


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
    app: Annotated[Optional[str], typer.Option("--app", help="delete only this application (default: all)")] = None,
) -> None:
    """Delete one application (--app), or shut every Serve application down (`serve shutdown`)."""
    client = serve_client(address)
    if app is None:
        client.delete_applications()
        console.print("deleted every Serve application")
        return
    details = client.get_serve_details()
    apps = app_statuses(details)
    if app not in apps:
        raise ServeConfigError(f"--app {app!r}: no such application (running: {', '.join(sorted(apps)) or 'none'})")
    remaining = [a["deployed_app_config"] for n, a in apps.items() if n != app and a.get("deployed_app_config")]
    if not remaining:
        client.delete_applications()
    else:
        config = {k: v for k, v in details.items() if k in ("proxy_location", "http_options", "grpc_options")}
        config["applications"] = remaining
        client.deploy_applications(config)
    console.print(f"deleted application {app}")


@serve_app.command("status")
def status(
    address: AddressOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Applications and deployments on the cluster, with their states and replica counts."""
    details = serve_client(address).get_serve_details()
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
            console.print(f"[yellow]degraded[/] {refusal_line(name, refused)}")
