"""Where ``ecomine serve up`` deployed: the record the other control verbs act on.

Sits in ``ecomine.serve`` beside ``control``: ``serve up`` writes a record (dashboard
address, applications, each one's registry, the config, the ``--blocking`` process id)
and ``serve status | down`` and ``retrain --serve`` read it, so a plain ``ecomine serve
down`` acts on the cluster ecomine deployed to - never on whichever Ray happens to hold
port 8265 on this host. An address with no record is refused by the verbs that change
something unless ``--force`` says so.

The file is ``$ECOMINE_STATE_DIR/serve.json`` (default ``~/.local/state/ecomine``; under
``$XDG_STATE_HOME`` when set), written whole by ``ecomine.storage`` (temp file, fsync, rename).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from ecomine import storage
from ecomine.serve.control import ServeConfigError
from ecomine.storage import StorageError

__all__ = ["Deployment", "state_file", "normalise", "remember", "recorded", "forget", "target", "process_alive"]


class Deployment(BaseModel):
    """One ``serve up``: where it went and what it deployed."""

    address: str  # the dashboard URL, normalised
    apps: list[str]
    registries: dict[str, str] = Field(default_factory=dict)  # app -> its registry, as sent
    config: str = ""
    pid: int | None = None  # the --blocking process serving it, if any
    at: float = Field(default_factory=time.time)


def state_file() -> Path:
    root = os.environ.get("ECOMINE_STATE_DIR")
    if not root:
        base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
        root = os.path.join(base, "ecomine")
    return Path(root) / "serve.json"


def normalise(address: str) -> str:
    """``127.0.0.1:8265`` and ``http://127.0.0.1:8265/`` name the same dashboard."""
    text = address.strip().rstrip("/")
    return text if "://" in text else f"http://{text}"


def recorded() -> list[Deployment]:
    """Every recorded deployment, newest last (none when the file does not exist)."""
    path = state_file()
    if not path.is_file():
        return []
    try:
        raw = storage.read_json(str(path))
        return [Deployment.model_validate(d) for d in raw.get("deployments", [])]
    except (StorageError, ValidationError, AttributeError) as exc:
        raise ServeConfigError(f"{path}: not a readable ecomine deployment record ({exc}); delete it and "
                               "run `ecomine serve up` again") from None


def _write(deployments: list[Deployment]) -> None:
    # storage's local write: a temp file in the folder, fsynced, then renamed over the record
    storage.write_json(str(state_file()), {"deployments": [d.model_dump() for d in deployments]})


def remember(dep: Deployment) -> None:
    """Record ``dep``; it replaces the record of the same apps at the same address."""
    dep = dep.model_copy(update={"address": normalise(dep.address)})
    keep = []
    for d in recorded():
        if d.address == dep.address:
            d = d.model_copy(update={"apps": [a for a in d.apps if a not in dep.apps]})
            if not d.apps:
                continue
        keep.append(d)
    _write([*keep, dep])


def forget(address: str, apps: list[str] | None = None) -> None:
    """Drop the record of ``apps`` (all, when None) at ``address``."""
    address = normalise(address)
    keep = []
    for d in recorded():
        if d.address == address:
            d = d.model_copy(update={"apps": [] if apps is None else [a for a in d.apps if a not in apps]})
            if not d.apps:
                continue
        keep.append(d)
    _write(keep)


def target(address: str | None, *, force: bool, verb: str) -> tuple[str, Deployment | None]:
    """The dashboard ``verb`` acts on and its record.

    No ``address``: the newest recorded deployment (ServeConfigError when there is none,
    unless ``force``, which falls back to $RAY_DASHBOARD_ADDRESS or 127.0.0.1:8265). An
    ``address`` that ecomine did not deploy to: ServeConfigError unless ``force``.
    """
    from ecomine.serve.control import dashboard_address

    records = recorded()
    if address is None:
        if records:
            return records[-1].address, records[-1]
        if force:
            return normalise(dashboard_address(None)), None
        raise ServeConfigError(
            f"{verb}: no `ecomine serve up` is recorded here ({state_file()}); pass --address URL --force "
            "to act on a cluster ecomine did not deploy to"
        )
    url = normalise(address)
    mine = [d for d in records if d.address == url]
    if mine:
        return url, mine[-1]
    if force:
        return url, None
    known = ", ".join(sorted({d.address for d in records})) or "none"
    raise ServeConfigError(
        f"{verb}: --address {url} is not where `ecomine serve up` deployed (recorded: {known}); "
        "add --force to act on it anyway"
    )


def process_alive(pid: int | None) -> bool:
    """A process with this id runs (an exited one its parent has not reaped yet - a zombie - does not)."""
    import psutil

    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
