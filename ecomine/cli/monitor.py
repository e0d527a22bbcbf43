"""`ecomine monitor`: live request features of a served app against the served versions' reference profiles.

An operator's verb on top of serve and the registry (mounted by ``ecomine.cli.main``'s
``_COMMANDS``). It reads the live windows from the app (``GET <url>/v1/drift``,
Bearer key from ``$ECOMINE_API_KEY``), the reference of each arm from the
registry (the served version's sha256-verified ``profile.json``), compares them
with ``ecomine.data.drift.compare`` and exits 1 when any feature drifted, so a
scheduler can run ``ecomine retrain`` on it. ``--events`` compares a served app's
event log (``POST /v1/events``, ``ecomine.live.event_log``) with a recommend
version's profile instead (``ecomine.data.event_drift``): what users do now against
what the version was trained on, before requests read it. Imports typer, rich and
httpx only; no Ray.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any, Optional

import typer

from ecomine.cli._common import console, err_console
from ecomine.registry import Registry, RegistryError
from ecomine.storage import StorageError

__all__ = ["monitor", "MonitorError", "EXIT_OK", "EXIT_DRIFT", "EXIT_BAD_INPUT"]

EXIT_OK, EXIT_DRIFT, EXIT_BAD_INPUT = 0, 1, 2


class MonitorError(Exception):
    """Input the monitor cannot judge drift from; one line on stderr, exit 2."""


def _fetch_windows(url: str, api_key_env: str, timeout: float) -> dict[str, Any]:
    import httpx

    key = os.environ.get(api_key_env) if api_key_env else None
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    target = url.rstrip("/") + "/v1/drift"
    try:
        response = httpx.get(target, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise MonitorError(f"--url: cannot reach {target}: {type(exc).__name__}: {exc}") from None
    if response.status_code == 401:
        raise MonitorError(f"--url: {target} answered 401: set {api_key_env} to one of the app's API keys")
    if response.status_code != 200:
        raise MonitorError(f"--url: {target} answered {response.status_code}: {response.text[:200]}")
    try:
        return response.json()["tasks"]
    except (ValueError, KeyError, TypeError):
        raise MonitorError(f"--url: {target} did not answer a drift window (is it an ecomine app?)") from None


def _reference(registry, task: str, version: str):
    from ecomine.data.drift import PROFILE_FILE, ProfileError, ReferenceProfile
    from ecomine.serve.monitor import no_profile_detail

    try:
        folder = registry.fetch(task, version)  # every file sha256-verified
    except (RegistryError, StorageError) as exc:
        raise MonitorError(f"--registry: {task}/{version} (served by the app): {exc}") from None
    path = folder / PROFILE_FILE
    if not path.exists():
        raise MonitorError(no_profile_detail(task, version))
    try:
        return ReferenceProfile.loads(path.read_text(), where=f"{task}/{version}/{PROFILE_FILE}")
    except ProfileError as exc:
        raise MonitorError(str(exc)) from None


def _table(rows: list[tuple[str, str, Any]]):
    from rich.table import Table

    table = Table(title="drift: live requests vs the served version's reference profile")
    for col, justify in (("task", "left"), ("arm", "left"), ("reference", "left"), ("feature", "left"),
                         ("role", "left"), ("live n", "right"), ("PSI", "right"), ("KS", "right"),
                         ("KS p", "right"), ("ref mean", "right"), ("live mean", "right"), ("status", "left")):
        table.add_column(col, justify=justify)

    def num(v: float | None, fmt: str = ".3f") -> str:
        return "-" if v is None else format(v, fmt)

    for task, arm, report in rows:
        for f in report.features:
            style = {"drift": "bold red", "ok": "green"}.get(f.status, "yellow")
            table.add_row(task, arm, report.reference, f.feature, f.role, str(f.n_live), num(f.psi), num(f.ks),
                          num(f.ks_pvalue, ".2g"), num(f.reference_mean, ".4g"), num(f.live_mean, ".4g"),
                          f"[{style}]{f.status}[/]" + (f" ({f.detail})" if f.detail and f.status != "ok" else ""))
    return table


def _run(url: str, registry_root: str, task: Optional[str], psi: float, ks: float, min_samples: int,
         api_key_env: str, timeout: float) -> list[tuple[str, str, Any]]:
    from ecomine.data.drift import FEATURES, compare

    if task is not None and task not in FEATURES:
        raise MonitorError(f"--task: {task!r} is not one of {sorted(FEATURES)}")
    windows = _fetch_windows(url, api_key_env, timeout)
    if task is not None:
        if task not in windows:
            raise MonitorError(f"--task: the app at {url} does not serve {task} (it serves {sorted(windows)})")
        windows = {task: windows[task]}
    registry = Registry(registry_root)
    rows = []
    for name, arms in windows.items():
        for arm, w in arms.items():
            if w.get("status") != "ok":
                raise MonitorError(f"{name}.{arm}: the arm is unavailable: {w.get('detail')}")
            profile = _reference(registry, name, w["reference_version"])
            report = compare(profile, w["window"], psi_threshold=psi, ks_threshold=ks, min_samples=min_samples,
                             skip=w.get("skip") or {})
            if report.status == "too_few":
                seen = max((v.get("seen", 0) for v in w["window"].values()), default=0)
                raise MonitorError(f"{name}.{arm}: the live window holds too few values ({seen} seen, need "
                                   f"--min-samples {min_samples}); wait for traffic or lower --min-samples")
            report.reference = f"{name}/{w['reference_version']}"
            rows.append((name, arm, report))
    return rows


def _run_events(events_uri: str, registry_root: str, version: str, since: Optional[str], psi: float, ks: float,
                min_samples: int) -> list[tuple[str, str, Any]]:
    """The event log's per-user histories against ``recommend/<version>``'s reference profile."""
    import json as _json
    from datetime import datetime, timezone

    from ecomine.data.drift import compare
    from ecomine.data.event_drift import event_log_window
    from ecomine.live.event_log import read_event_log

    when = None
    if since is not None:
        try:
            when = datetime.fromisoformat(since)
        except ValueError:
            raise MonitorError(f"--since: {since!r} is not an ISO date (e.g. 2026-12-01)") from None
        when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    registry = Registry(registry_root)
    try:
        resolved = registry.resolve("recommend", version)
        registry.get("recommend", resolved)
    except (RegistryError, StorageError) as exc:
        raise MonitorError(f"--version: {exc}") from None
    profile = _reference(registry, "recommend", resolved)
    if "item_rank" not in profile.lookups:
        raise MonitorError(f"recommend/{resolved}: its profile has no item ranks (retrain it to monitor events)")
    folder = registry.fetch("recommend", resolved)
    vocab = _json.loads((folder / "items.json").read_text())["items"]
    try:
        events = read_event_log(events_uri, since=when)
    except StorageError as exc:
        raise MonitorError(f"--events: {exc}") from None
    if events.height == 0:
        raise MonitorError(f"--events: {events_uri} holds no events" + (f" since {since}" if since else ""))
    window, users = event_log_window(events, vocab, profile.lookups["item_rank"], since=when)
    report = compare(profile, window, psi_threshold=psi, ks_threshold=ks, min_samples=min_samples,
                     skip={"top1_probability": "an event log has no answers (the served app's window has them)"})
    if report.status == "too_few":
        raise MonitorError(f"--events: {users} users in the log, need --min-samples {min_samples}; wait for "
                           "events or lower --min-samples")
    report.reference = f"recommend/{resolved}"
    return [("recommend", f"events ({users} users)", report)]


def monitor(
    url: Annotated[str, typer.Option("--url", envvar="ECOMINE_URL", help="base URL of the served app (with its route prefix)")] = "http://127.0.0.1:8000",
    registry: Annotated[str, typer.Option("--registry", envvar="ECOMINE_REGISTRY", help="registry root the app serves from: folder or s3://")] = "registry",
    task: Annotated[Optional[str], typer.Option("--task", help="only this task (recommend | demand | risk); default every served task")] = None,
    psi: Annotated[float, typer.Option("--psi", min=0, help="PSI at or above which a feature counts as drifted")] = 0.2,
    ks: Annotated[float, typer.Option("--ks", min=0, max=1, help="KS statistic at or above which a feature counts as drifted")] = 0.3,
    min_samples: Annotated[int, typer.Option("--min-samples", min=1, help="live values a feature needs to be compared")] = 100,
    api_key_env: Annotated[str, typer.Option("--api-key-env", help="environment variable holding the app's API key")] = "ECOMINE_API_KEY",
    as_json: Annotated[bool, typer.Option("--json", help="print the reports as JSON instead of a table")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="seconds to wait for the app")] = 10.0,
    events: Annotated[Optional[str], typer.Option("--events", help="compare this event log (a served app's live.log_uri: folder or s3://) with a recommend version's profile instead of the app's live windows")] = None,
    version: Annotated[str, typer.Option("--version", help="--events: the recommend version or stage to compare with")] = "production",
    since: Annotated[Optional[str], typer.Option("--since", help="--events: only events at or after this ISO date")] = None,
) -> None:
    """Compare live request features with the served versions' reference profiles (PSI and KS per feature).

    Exit codes: 0 no drift; 1 drift found (a feature's PSI >= --psi or KS >= --ks: a scheduler can then run `ecomine retrain`); 2 bad input (the app unreachable or refusing the key, a served version without profile.json, a live window with fewer than --min-samples values).
    """
    try:
        if events is not None:
            if task not in (None, "recommend"):
                raise MonitorError(f"--task: an event log feeds the recommender, not {task}")
            rows = _run_events(events, registry, version, since, psi, ks, min_samples)
        else:
            rows = _run(url, registry, task, psi, ks, min_samples, api_key_env, timeout)
    except MonitorError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    drifted = [f"{t}.{a}.{f}" for t, a, r in rows for f in r.drifted]
    if as_json:
        out = [{"task": t, "arm": a, "reference": r.reference, **r.to_json()} for t, a, r in rows]
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        console.print(_table(rows))
        console.print(f"[bold red]drift[/] in {', '.join(drifted)}" if drifted else "[green]no drift[/]", highlight=False)
    raise typer.Exit(EXIT_DRIFT if drifted else EXIT_OK)
