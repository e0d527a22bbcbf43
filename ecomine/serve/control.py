"""Serve control from outside the cluster: read and check a Serve config, reach the dashboard, read what runs.

Sits in ``ecomine.serve`` beside ``swap`` (which hot-swaps a served version through
these) and under ``ecomine serve up | down | status | check`` (``cli.serve``) and
``ecomine retrain --serve``. Every config is checked against Ray's ``ServeDeploySchema``
and every ecomine application's ``args`` against ``AppArgs`` before anything is sent, so
a typo is one line naming the file and the field. The cluster is reached through the
dashboard's Serve REST API (``serve.rest``: the routes ``serve deploy`` uses).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import yaml

from ecomine.serve.rest import ServeRest, ServeRestError
from ecomine.specs import SpecError

__all__ = [
    "ServeConfigError",
    "ECOMINE_IMPORT_PATH",
    "DEFAULT_DASHBOARD",
    "read_serve_config",
    "validate_serve_config",
    "load_serve_config",
    "dashboard_address",
    "serve_client",
    "app_statuses",
    "wait_running",
    "wait_running_on",
    "failure_line",
    "models_url",
    "get_models",
    "refused_arms",
    "refusal_line",
    "unavailable_arms",
    "summarize",
]

ECOMINE_IMPORT_PATH = "ecomine.serve.app:build"
DEFAULT_DASHBOARD = "http://127.0.0.1:8265"

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


def dashboard_address(address: str | None) -> str:
    return address or os.environ.get("RAY_DASHBOARD_ADDRESS") or DEFAULT_DASHBOARD


def serve_client(address: str | None) -> ServeRest:
    """A client of the dashboard's Serve REST API at ``address`` (else $RAY_DASHBOARD_ADDRESS, else 127.0.0.1:8265)."""
    url = dashboard_address(address)
    try:
        return ServeRest(url)
    except ServeRestError as exc:
        raise ServeConfigError(
            f"{exc}; start a cluster with `ray start --head`, pass --address, or run locally with `ecomine serve up CONFIG --blocking`"
        ) from None


def app_statuses(details: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return details.get("applications") or {}


def wait_running(address: str | None, names: list[str], timeout_s: float) -> dict[str, Any]:
    """Poll until every app in ``names`` is RUNNING; raise ServeConfigError on DEPLOY_FAILED or timeout."""
    with serve_client(address) as client:
        return wait_running_on(client, names, timeout_s)


def wait_running_on(client: ServeRest, names: list[str], timeout_s: float) -> dict[str, Any]:
    """`wait_running` on a client the caller already holds."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, Any] = {}
    while True:
        apps = app_statuses(client.get_serve_details())
        last = {n: apps.get(n, {}).get("status", "NOT_STARTED") for n in names}
        failed = [n for n in names if last[n] in ("DEPLOY_FAILED", "UNHEALTHY")]
        if failed:
            msg = failure_line(str(apps[failed[0]].get("message", "")))
            raise ServeConfigError(f"application {failed[0]!r} is {last[failed[0]]}: {msg}")
        if all(s == "RUNNING" for s in last.values()):
            return apps
        if time.monotonic() > deadline:
            raise ServeConfigError(f"applications not running after {timeout_s:g} s: {last}")
        time.sleep(1.0)


def failure_line(message: str) -> str:
    """One line of an app's failure message: ecomine's builder's own (``ecomine: <field>: <reason>``),
    else the traceback's last line (the exception), else the message folded onto one line."""
    if "ecomine: " in message:
        return " ".join(message[message.index("ecomine: "):].split())[:1500]
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if len(lines) > 1 and any(line.startswith("Traceback") for line in lines):
        return lines[-1][:1500]
    return " ".join(message.split())[-1500:]


def models_url(details: dict[str, Any], app: str) -> str:
    """``GET /v1/models`` of ``app``, from the cluster's HTTP options (a wildcard host read as loopback)."""
    http = details.get("http_options") or {}
    host = http.get("host") or "127.0.0.1"
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    prefix = ((app_statuses(details).get(app) or {}).get("route_prefix") or "/").rstrip("/")
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


def unavailable_arms(models: dict[str, Any]) -> list[str]:
    """Arms of a ``GET /v1/models`` answer that serve nothing now: ``<deployment>: <status> (<detail>)``."""
    out = []
    for task in (models.get("tasks") or {}).values():
        for arm in ("champion", "challenger"):
            info = task.get(arm) or {}
            if info and info.get("status") not in ("ok", "degraded"):
                out.append(f"{info.get('deployment')}: {info.get('status')} ({' '.join(str(info.get('detail', '')).split())[:300]})")
    return out


def refusal_line(app: str, refused: dict[str, Any]) -> str:
    """One line: which deployment refused which version, the file that failed, why, and what it still serves."""
    file = f" ({refused['file']} failed its check)" if refused.get("file") else ""
    kept = f"; still serving {refused['serving']}" if refused.get("serving") else ""
    return (f"application {app!r}: {refused['deployment']} refused version {refused.get('version')}{file}: "
            f"{refused['reason'][:400]}{kept}")


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
            out[name]["unavailable"] = unavailable_arms(report) if report else []
    return out
