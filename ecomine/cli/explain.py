"""`ecomine explain <task> <request.json>`: a registered version's answer and why, offline.

An operator's verb mounted by ``ecomine.cli.main``'s ``_COMMANDS``. The request file is the
JSON body of the route (``/v1/recommend``, ``/v1/demand``, ``/v1/risk``; ``explain`` is
implied), validated by the same models; the version is loaded as a Serve replica loads it
(``predict.runtime.load_state``: sha256-verified, ensembles expanded) and explained by
``serve.explain.explain_request``, so the answer is the one the app would serve with
``explain: true``. No Ray. Bad input (a field, a version, a model that cannot explain) is
one line on stderr and exit 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ecomine.cli._common import console, err_console

__all__ = ["explain", "explain_offline"]

_REQUESTS = {"recommend": "RecommendRequest", "demand": "DemandRequest", "risk": "RiskRequest"}
_RESPONSES = {"recommend": "RecommendResponse", "demand": "DemandResponse", "risk": "RiskResponse"}


class ExplainError(Exception):
    """A request, version or model this verb cannot explain; the message names which."""


def explain_offline(registry: str, task: str, version: str, body: Any, *, source: str = "request",
                    limits: dict[str, int] | None = None) -> dict[str, Any]:
    """The route's JSON answer with explanations for ``body`` from ``task/version`` of ``registry``."""
    from pydantic import ValidationError

    from ecomine.api import schema as api
    from ecomine.predict.explain import explain_request
    from ecomine.predict.ranking import Rejected
    from ecomine.predict.runtime import load_state
    from ecomine.predict.state import ModelLoadError
    from ecomine.predict.tasks import predict_task
    from ecomine.serve.config import Limits

    if task not in _REQUESTS:
        raise ExplainError(f"task must be one of {sorted(_REQUESTS)}, got {task!r}")
    if not isinstance(body, dict):
        raise ExplainError(f"{source}: the JSON body of POST /v1/{task} must be an object, got {type(body).__name__}")
    try:
        req = getattr(api, _REQUESTS[task]).model_validate({**body, "explain": True})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ExplainError(f"{source}: {'.'.join(map(str, first['loc'])) or 'body'}: {first['msg']}") from None
    offline = predict_task(task).offline
    try:
        payload = offline(req.model_dump()) if offline is not None else req.model_dump()
    except ValueError as exc:
        raise ExplainError(f"{source}: {exc}") from None
    bounds = {k: v for k, v in Limits(**(limits or {})).model_dump().items() if k.startswith("max_explain_")}
    from ecomine.registry import Registry

    try:
        state = load_state(Registry(registry), task, [(version, 1.0)], name=f"explain {task}/{version}")
    except ModelLoadError as exc:
        raise ExplainError(str(exc)) from None
    try:
        answer, _ = explain_request(state, payload, bounds)
    except Rejected as exc:
        raise ExplainError(f"{source}: {'.'.join(map(str, exc.loc[1:])) or 'body'}: {exc.msg}") from None
    return getattr(api, _RESPONSES[task]).model_validate(answer).model_dump(mode="json")


def explain(
    task: Annotated[str, typer.Argument(help="recommend | demand | risk")],
    request: Annotated[Path, typer.Argument(help="JSON body of POST /v1/<task> (explain is implied); - reads stdin")],
    registry: Annotated[str, typer.Option("--registry", help="registry root: folder or s3:// URI", envvar="ECOMINE_REGISTRY")],
    version: Annotated[str, typer.Option(help="version id, stage or 'latest'")] = "production",
    out: Annotated[Optional[Path], typer.Option(help="write the JSON answer here (default: print it)")] = None,
) -> None:
    """Explain a registered version's answer to one request, as the served app would with explain: true."""
    err = err_console

    def fail(msg: str) -> None:
        err.print(f"[bold red]error:[/] {' '.join(msg.split())}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)

    source = "stdin" if str(request) == "-" else str(request)
    try:
        text = sys.stdin.read() if source == "stdin" else request.read_text()
    except OSError as exc:
        fail(f"{source}: cannot read: {exc.strerror or exc}")
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{source}: not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    try:
        answer = explain_offline(registry, task, version, body, source=source)
    except ExplainError as exc:
        fail(str(exc))
    text = json.dumps(answer, indent=2)
    if out is None:
        print(text)
    else:
        out.write_text(text + "\n")
        console.print(f"explained {task}/{version} -> {out}")
