"""What a loaded version is, without Ray: a member, the snapshot a replica serves, the errors of loading.

The bottom of ``ecomine.predict``: the per-task modules (``recommend_task``, ``demand_task``,
``risk_task``), ``tasks`` (their registry), ``runtime`` (loading, one batch of jobs),
``answers`` and ``explain`` read these types; nothing here knows a task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["TASKS", "ModelLoadError", "reconfigure_failure", "Member", "ModelState", "torch_device",
           "ExplainLimits", "explain_limit"]

TASKS = ("recommend", "demand", "risk")

ExplainLimits = dict[str, int]  # the deployment's max_explain_* limits, sent with the request by the ingress


class ModelLoadError(RuntimeError):
    """A version could not be resolved, fetched, verified or loaded; the message names which."""


def reconfigure_failure(user_config: Any, exc: BaseException) -> dict[str, Any]:
    """What a refused ``user_config`` is reported as: ``{version, file, reason, at}``.

    ``version`` is what the config asked for (a ref, or an ensemble's refs joined by ``+``);
    ``file`` the version file that failed its check (a ``ChecksumMismatch`` anywhere in the
    cause chain), else None; ``reason`` the error on one line.
    """
    version = None
    if isinstance(user_config, dict):
        if isinstance(user_config.get("version"), str):
            version = user_config["version"]
        elif isinstance(user_config.get("members"), list):
            refs = [str(m.get("version")) for m in user_config["members"] if isinstance(m, dict)]
            version = "+".join(refs) or None
    file, seen, cur = None, set(), exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(getattr(cur, "file", None), str):
            file = cur.file
            break
        cur = cur.__cause__ or cur.__context__
    reason = " ".join(f"{type(exc).__name__}: {exc}".split())
    return {"version": version, "file": file, "reason": reason[:600],
            "at": datetime.now(timezone.utc).isoformat()}


@dataclass
class Member:
    """One loaded version of an ensemble (or the only one)."""

    version: str
    ref: str
    weight: float
    created_at: datetime | None
    stages: list[str]
    obj: Any
    spec: dict[str, Any] = field(default_factory=dict)  # the spec that trained it (manifest)
    folder: Path | None = None
    temperature: float = 1.0  # recommend: softmax(temperature * scores), fitted by `ecomine ensemble build`


@dataclass
class ModelState:
    """One immutable snapshot of what a replica serves; a swap replaces the whole object."""

    task: str
    members: list[Member]
    weights: list[float]
    label: str
    loaded_at: datetime
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def versions(self) -> list[str]:
        return [m.version for m in self.members]


def torch_device() -> str:
    """``cuda`` when torch sees a GPU here, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def explain_limit(limits: ExplainLimits, name: str) -> int:
    """One ``max_explain_*`` bound: the deployment's, else the API default."""
    from ecomine.api.schema import DEFAULT_LIMITS

    return int(limits.get(name, DEFAULT_LIMITS[name]))
