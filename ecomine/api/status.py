"""The HTTP API's operator side: what ``GET /v1/models``, ``/v1/drift`` and ``/healthz`` answer.

Sits in ``ecomine.api`` beside ``schema`` (the task routes' requests and responses, which
callers build); these are responses only, read by operators, the SDK's ``models()`` /
``drift()`` / ``health()`` and ``ecomine monitor``. Only pydantic is imported here, so the
client installs light.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from ecomine.api.schema import _Response

__all__ = [
    "MemberInfo",
    "FeatureDrift",
    "DriftInfo",
    "ReconfigureError",
    "ArmInfo",
    "TrafficInfo",
    "ShadowSummary",
    "TaskInfo",
    "ModelsResponse",
    "DriftWindow",
    "DriftResponse",
    "HealthResponse",
]


# --------------------------------------------------------------------------- models and drift


class MemberInfo(_Response):
    version: str
    weight: float = 1.0
    created_at: datetime | None = None
    stages: list[str] = Field(default_factory=list)
    ref: str | None = Field(None, description="what the config asked for: a version id, a stage or 'latest'")


class FeatureDrift(_Response):
    feature: str
    role: Literal["input", "prediction"]
    n_reference: int
    n_live: int
    psi: float | None = Field(None, description="population stability index against the reference bins")
    ks: float | None = Field(None, description="two-sample Kolmogorov-Smirnov statistic")
    ks_pvalue: float | None = None
    reference_mean: float | None = None
    live_mean: float | None = None
    status: Literal["ok", "drift", "too_few", "skipped"]
    detail: str | None = None


class DriftInfo(_Response):
    """Live requests of one arm against its version's reference profile (``ecomine.data.drift``)."""

    status: Literal["ok", "drift", "too_few", "no_profile"]
    reference_version: str | None = Field(None, description="whose profile.json: the version, or an ensemble's heaviest member")
    observations: int = Field(0, description="requests observed since this version was loaded")
    drifted: list[str] = Field(default_factory=list)
    psi_threshold: float | None = None
    ks_threshold: float | None = None
    features: list[FeatureDrift] = Field(default_factory=list)
    detail: str | None = None


class ReconfigureError(_Response):
    """A ``user_config`` the arm's replica refused; it kept serving what it served before."""

    version: str | None = Field(None, description="what the refused config asked for (ensemble refs joined by '+')")
    file: str | None = Field(None, description="the version file that failed its sha256 check, when one did")
    reason: str = Field(description="the error, on one line")
    at: datetime | None = Field(None, description="when the replica refused it")


class ArmInfo(_Response):
    deployment: str
    kind: Literal["single", "ensemble"]
    status: Literal["ok", "degraded", "unavailable"] = Field(
        "ok", description="degraded: serving, but its last reconfigure was refused (last_reconfigure_error)"
    )
    detail: str | None = None
    last_reconfigure_error: ReconfigureError | None = None
    model: str | None = None
    members: list[MemberInfo] = Field(default_factory=list)
    loaded_at: datetime | None = None
    device: str | None = Field(None, description="where the model runs: cpu or cuda")
    max_batch_size: int | None = None
    batch_wait_timeout_s: float | None = None
    drift: DriftInfo | None = None


class TrafficInfo(_Response):
    mode: Literal["ab", "canary", "shadow"]
    weight: float
    salt: str


class ShadowSummary(_Response):
    compared: int = 0
    failed: int = 0
    mean_agreement: float | None = Field(None, description="recommend: top-k overlap; demand: 1 - WAPE of medians; risk: decisions agreeing")
    recent: list[dict] = Field(default_factory=list, description="latest comparisons (hashed user ids only)")


class TaskInfo(_Response):
    route: str
    champion: ArmInfo
    challenger: ArmInfo | None = None
    traffic: TrafficInfo | None = None
    shadow: ShadowSummary | None = None


class ModelsResponse(_Response):
    status: Literal["ok", "degraded"] = Field(
        "ok", description="degraded: an arm is not ok (see its status), or the ingress refused its last user_config"
    )
    tasks: dict[str, TaskInfo]
    not_configured: list[str] = Field(default_factory=list)
    last_reconfigure_error: ReconfigureError | None = Field(
        None, description="the Ingress deployment's own refused user_config (colocated arms: a name that is no arm)"
    )


class DriftWindow(_Response):
    """One arm's live drift window: the raw samples ``ecomine monitor`` compares with the registry's profile."""

    deployment: str
    status: Literal["ok", "unavailable"]
    detail: str | None = None
    task: str | None = None
    versions: list[str] = Field(default_factory=list)
    reference_version: str | None = None
    has_profile: bool = False
    observations: int = 0
    skip: dict[str, str] = Field(default_factory=dict, description="features not to compare, and why")
    window: dict[str, dict] = Field(default_factory=dict, description="feature -> {seen, values}: a uniform sample")


class DriftResponse(_Response):
    tasks: dict[str, dict[str, DriftWindow]] = Field(description="task -> arm (champion, challenger) -> window")



# --------------------------------------------------------------------------- health


class HealthResponse(_Response):
    status: Literal["ok", "degraded", "unavailable"]
    tasks: list[str]
    ecomine: str
    detail: dict[str, str] = Field(default_factory=dict)
