"""`ecomine serve up | down | status | check`: run and manage Serve configs.

A typer sub-app that ``ecomine.cli`` mounts as ``ecomine serve``. It wraps Ray
Serve's own commands and adds validation first: every config is checked
against Ray's ``ServeDeploySchema`` and every ecomine application's ``args``
against ``AppArgs`` before anything is sent, so a typo is one line naming the
file and the field. ``up --blocking`` is ``serve run CONFIG`` (a local Ray
unless ``--address``/``RAY_ADDRESS`` names one; Ctrl-C stops it); plain ``up``
is ``serve deploy CONFIG`` to a running cluster's dashboard, then waits until
the applications run (or says why they failed). A KubeRay RayService file is
accepted too: its ``serveConfigV2`` is what gets checked and deployed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import yaml
from rich.console import Console
from rich.table import Table

from ecomine.specs import SpecError

__all__ = [
    "serve_app",
    "ServeConfigError",
    "ECOMINE_IMPORT_PATH",
    "read_serve_config",
    "validate_serve_config",
    "load_serve_config",
    "up",
    "down",
    "status",
    "check",
    "hash_key",
    "summarize",
    "wait_running",
    "models_url",
    "get_models",
    "refused_arms",
    "refusal_line",
]

ECOMINE_IMPORT_PATH = "ecomine.serve.app:build"
DEFAULT_DASHBOARD = "http://127.0.0.1:8265"

serve_app = typer.Typer(
    help="Run a Serve config: `up` (serve deploy / serve run), `down`, `status`, `check`, `hash-key`.",
    no_args_is_help=True,
)
console = Console()

AddressOpt = Annotated[
    Optional[str],
    typer.Option("--address", "-a", help="Ray dashboard URL (default $RAY_DASHBOARD_ADDRESS or http://127.0.0.1:8265)"),
]


class ServeConfigError(SpecError):
    """A Serve config that cannot be used: the message names the file and the field.

    A SpecError, so ``ecomine``'s main turns it into one line and exit code 2."""


def read_serve_config(path: str | Path) -> dict[str, Any]:
    """The Serve config (a dict) in ``path``: a Serve config YAML, or a KubeRay RayService's serveConfigV2."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise ServeConfigError(f"{p}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ServeConfigError(f"{p}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ServeConfigError(f"{p}: a Serve config is a mapping at the top level")
    if raw.get("kind") == "RayService":
        text = (raw.get("spec") or {}).get("serveConfigV2")
        if not isinstance(text, str):
            raise ServeConfigError(f"{p}: spec.serveConfigV2 must be a YAML string (the Serve config)")
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ServeConfigError(f"{p}: spec.serveConfigV2 is not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise ServeConfigError(f"{p}: spec.serveConfigV2 must hold a mapping")
    return raw


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "<root>"


def validate_serve_config(raw: dict[str, Any], source: str = "config") -> Any:
    """Check ``raw`` against Ray's ``ServeDeploySchema`` and ecomine apps' args against ``AppArgs``.

    Returns the ``ServeDeploySchema``. Raises ServeConfigError naming every problem.
    """
    from pydantic import ValidationError
    from ray.serve.schema import ServeDeploySchema

    from ecomine.serve.config import AppArgs

    try:
        schema = ServeDeploySchema.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{_where(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ServeConfigError(f"{source}: not a valid Serve config: {problems}") from None
    for n, app in enumerate(schema.applications):
        if app.import_path != ECOMINE_IMPORT_PATH:
            continue
        try:
            AppArgs.model_validate(app.args)
        except ValidationError as exc:
            problems = "; ".join(f"applications.{n}.args.{_where(e['loc'])}: {e['msg']}" for e in exc.errors())
            raise ServeConfigError(f"{source}: application {app.name!r}: {problems}") from None
    return schema


def load_serve_config(path: str | Path) -> Any:
    """``read_serve_config`` + ``validate_serve_config``: what every command does first."""
    return validate_serve_config(read_serve_config(path), str(path))


def _address(address: str | None) -> str:
    return address or os.environ.get("RAY_DASHBOARD_ADDRESS") or DEFAULT_DASHBOARD


def _use_ray_token_if_present() -> None:
    """Send Ray's auth token (``~/.ray/auth_token``) when RAY_AUTH_MODE is unset, as `ray start` and
    ``ray.init`` do; without it a token-protected dashboard answers 401."""
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # older or newer Ray: RAY_AUTH_MODE=token still works
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _client(address: str | None) -> Any:
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    _use_ray_token_if_present()
    url = _address(address)
    try:
        return ServeSubmissionClient(url)
    except Exception as exc:
        raise ServeConfigError(
            f"no Ray dashboard answers at {url} ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); "
            "start a cluster with `ray start --head`, pass --address, or run locally with `ecomine serve up CONFIG --blocking`"
        ) from None


def _app_statuses(details: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return details.get("applications") or {}


def wait_running(address: str | None, names: list[str], timeout_s: float) -> dict[str, Any]:
    """Poll until every app in ``names`` is RUNNING; raise ServeConfigError on DEPLOY_FAILED or timeout."""
    client = _client(address)
    deadline = time.monotonic() + timeout_s
    last: dict[str, Any] = {}
    while True:
        apps = _app_statuses(client.get_serve_details())
        last = {n: apps.get(n, {}).get("status", "NOT_STARTED") for n in names}
        failed = [n for n in names if last[n] in ("DEPLOY_FAILED", "UNHEALTHY")]
        if failed:
            msg = " ".join(str(apps[failed[0]].get("message", "")).split())[-1500:]
            raise ServeConfigError(f"application {failed[0]!r} is {last[failed[0]]}: {msg}")
        if all(s == "RUNNING" for s in last.values()):
            return apps
        if time.monotonic() > deadline:
            raise ServeConfigError(f"applications not running after {timeout_s:g} s: {last}")
        time.sleep(1.0)


def models_url(details: dict[str, Any], app: str) -> str:
    """``GET /v1/models`` of ``app``, from the cluster's HTTP options (a wildcard host read as loopback)."""
    http = details.get("http_options") or {}
    host = http.get("host") or "127.0.0.1"
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    prefix = ((_app_statuses(details).get(app) or {}).get("route_prefix") or "/").rstrip("/")
    return f"http://{host}:{http.get('port', 8000)}{prefix}/v1/models"


def get_models(url: str) -> dict[str, Any] | None:
    """The app's ``GET /v1/models`` (the first key of ``$ECOMINE_API_KEYS`` as Bearer), None without an answer."""
    import httpx

    keys = [k.strip() for k in os.environ.get("ECOMINE_API_KEYS", "").split(",") if k.strip()]
    headers = {"Authorization": f"Bearer {keys[0]}"} if keys else {}
    try:
        r = httpx.get(url, headers=headers, timeout=5.0)
        body = r.json()
    except (httpx.HTTPError, ValueError):
        return None
    return body if r.status_code == 200 and isinstance(body, dict) else None


def _after(at: Any, since: float | None) -> bool:
    from datetime import datetime

    if since is None:
        return True
    try:
        return datetime.fromisoformat(str(at)).timestamp() >= since - 1.0  # a second of slack for clocks
    except ValueError:
        return False


def refused_arms(models: dict[str, Any], since: float | None = None) -> list[dict[str, Any]]:
    """Arms (and the ingress) of a ``GET /v1/models`` answer whose last reconfigure was refused
    (at or after ``since``, a Unix time, when given): ``{deployment, serving, version, file, reason, at}``."""
    out = []
    for task in (models.get("tasks") or {}).values():
        for arm in ("champion", "challenger"):
            info = task.get(arm) or {}
            err = info.get("last_reconfigure_error")
            if err and _after(err.get("at"), since):
                out.append({"deployment": info.get("deployment"), "serving": info.get("model"), **err})
    err = models.get("last_reconfigure_error")
    if err and _after(err.get("at"), since):
        out.append({"deployment": "Ingress", "serving": None, **err})
    return out


def refusal_line(app: str, refused: dict[str, Any]) -> str:
    """One line: which deployment refused which version, the file that failed, why, and what it still serves."""
    file = f" ({refused['file']} failed its check)" if refused.get("file") else ""
    kept = f"; still serving {refused['serving']}" if refused.get("serving") else ""
    return (f"application {app!r}: {refused['deployment']} refused version {refused.get('version')}{file}: "
            f"{refused['reason'][:400]}{kept}")


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
    client = _client(address)
    sent = time.time()
    client.deploy_applications(schema.model_dump(exclude_unset=True, mode="json"))
    console.print(f"sent {config} to {_address(address)}: {', '.join(names)}")
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
    client = _client(address)
    if app is None:
        client.delete_applications()
        console.print("deleted every Serve application")
        return
    details = client.get_serve_details()
    apps = _app_statuses(details)
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


def summarize(apps: dict[str, dict[str, Any]], models: dict[str, dict[str, Any] | None] | None = None) -> dict[str, Any]:
    """``{app: {status, route_prefix, message, deployments: {name: {status, replicas, running, message}}}}``;
    with ``models`` (an app's ``GET /v1/models``, by app), also ``models_status`` and ``refused``
    (``refused_arms``: a user_config an arm refused while it kept serving)."""
    out: dict[str, Any] = {}
    for name, app in sorted(apps.items()):
        deployments = {}
        for dname, dep in sorted((app.get("deployments") or {}).items()):
            replicas = dep.get("replicas") or []
            deployments[dname] = {
                "status": dep.get("status"),
                "replicas": len(replicas),
                "running": sum(1 for r in replicas if r.get("state") == "RUNNING"),
                "message": dep.get("message") or "",
            }
        out[name] = {"status": app.get("status"), "route_prefix": app.get("route_prefix"),
                     "message": app.get("message") or "", "deployments": deployments}
        if models and name in models:
            report = models[name]
            out[name]["models_status"] = report.get("status", "ok") if report else "no answer"
            out[name]["refused"] = refused_arms(report) if report else []
    return out


@serve_app.command("status")
def status(
    address: AddressOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Applications and deployments on the cluster, with their states and replica counts."""
    details = _client(address).get_serve_details()
    apps = _app_statuses(details)
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
