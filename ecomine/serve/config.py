"""What a user writes under ``args:`` of a Serve config, validated by pydantic.

Sits at the top of ``ecomine.serve``: ``ecomine.serve.app:build`` takes an
``AppArgs``; the deployments take a ``ModelSettings`` as their ``user_config``.
Ray-free, so configs validate (and unit tests run) without a cluster.

Deployment names (what a Serve config's ``deployments:`` list refers to when it
overrides options, e.g. to swap a version in place through ``user_config``)::

    Ingress                                  the HTTP routes
    recommend-champion, recommend-challenger Recommender, or Ensemble for members
    demand-champion,    demand-challenger    DemandForecaster / Ensemble
    risk-champion,      risk-challenger      RiskScorer / Ensemble

A model deployment's ``user_config`` is a ``ModelSettings``: the version (or
ensemble members) and the batching knobs. Changing only ``user_config`` in a
``serve deploy`` swaps the model inside the running replicas (load new, then
switch; no request fails); changing ``args`` rebuilds the app (a rolling restart).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from ecomine.api.schema import DEFAULT_LIMITS as _DEFAULT_LIMITS
from ecomine.predict.runtime import DEFAULT_LOADERS
from ecomine.predict.state import TASKS
from ecomine.serve.live_args import LiveArgs
from ecomine.serve.traffic import TrafficPolicy
from ecomine.storage import S3Options

__all__ = [
    "TASKS",
    "DEFAULT_LOADERS",
    "deployment_name",
    "MemberArgs",
    "ArmArgs",
    "Batching",
    "ModelSettings",
    "ModelResources",
    "TaskArgs",
    "RecommendArgs",
    "DemandArgs",
    "RiskArgs",
    "Limits",
    "AuthArgs",
    "IngressArgs",
    "ObservabilityArgs",
    "LiveArgs",
    "AppArgs",
]

_REF = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_IMPORT = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


def deployment_name(task: str, arm: str) -> str:
    """``recommend-champion``: the Serve deployment of one arm of a task."""
    return f"{task}-{arm}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_ref(value: str) -> str:
    if not _REF.fullmatch(value):
        raise ValueError(f"{value!r} is not a version id, 'staging', 'production' or 'latest'")
    return value


class MemberArgs(_Strict):
    """One member of an ensemble."""

    version: str = Field(description="version id | staging | production | latest")
    weight: float = Field(1.0, gt=0, le=1e6, description="relative weight in the mean (normalised)")

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        return _check_ref(v)


class ArmArgs(_Strict):
    """What one arm serves: one version, or an ensemble of members of the same task."""

    version: str | None = Field(None, description="version id | staging | production | latest")
    members: list[MemberArgs] | None = Field(None, min_length=2, max_length=16, description="ensemble members")

    @field_validator("version")
    @classmethod
    def _version(cls, v: str | None) -> str | None:
        return None if v is None else _check_ref(v)

    @model_validator(mode="after")
    def _one(self) -> ArmArgs:
        if (self.version is None) == (self.members is None):
            raise ValueError("set exactly one of 'version' (one model) or 'members' (an ensemble)")
        return self

    @property
    def is_ensemble(self) -> bool:
        return self.members is not None

    def refs(self) -> list[MemberArgs]:
        return list(self.members) if self.members is not None else [MemberArgs(version=str(self.version))]


class Batching(_Strict):
    """Dynamic batching of a model arm (``ecomine.serve.batching``): a batch is cut when the model is free."""

    max_batch_size: int = Field(32, ge=1, le=1024, description="1 turns batching off")
    batch_wait_timeout_s: float = Field(
        0.0, ge=0.0, le=1.0, description="an idle model waits at most this long for a fuller batch (0: never)"
    )


class ModelSettings(ArmArgs, Batching):
    """The ``user_config`` of a model deployment (``reconfigure`` applies it in place)."""


# Ray Serve's own default (0) stops a deployment's old replicas before their replacements start:
# a change of `args` left a one-replica deployment (and the ingress) answering nothing for 10-16 s.
SURGE = ("extra replicas (% of the target, rounded up) started during a redeploy that restarts replicas: "
         "the old ones serve until the new are ready; needs room for them (CPUs, a GPU). 0: Ray's stop-then-start")


def _checked_autoscaling(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """`autoscaling_config` checked against Ray Serve's own `AutoscalingConfig` at validation time,
    not when Serve deploys it: Ray's model ignores unknown keys, so a typo (`max_replica: 4`)
    would autoscale on Ray's defaults without a word."""
    if value is None:
        return None
    from pydantic import ValidationError
    from ray.serve.config import AutoscalingConfig

    unknown = sorted(set(value) - set(AutoscalingConfig.model_fields))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown}; Ray Serve's autoscaling_config takes "
                         f"{sorted(AutoscalingConfig.model_fields)}")
    try:
        AutoscalingConfig.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{where + ': ' if where else ''}{first['msg'].removeprefix('Value error, ')}") from None
    return value


class ModelResources(_Strict):
    """How a task's model deployments run (each arm gets these)."""

    num_cpus: float = Field(0.25, gt=0, description="logical CPUs per replica; keep it fractional on small machines")
    num_gpus: float = Field(0.0, ge=0)
    memory: int | None = Field(None, ge=0, description="bytes of memory reserved per replica")
    num_replicas: int | Literal["auto"] = Field(1, description="an integer, or 'auto' (Ray's default autoscaling)")
    autoscaling_config: dict[str, Any] | None = Field(
        None, description="Ray Serve autoscaling_config (min_replicas, max_replicas, target_ongoing_requests ...)"
    )
    max_ongoing_requests: int = Field(64, ge=1, description="in-flight requests per replica (>= max_batch_size)")
    max_queued_requests: int = Field(-1, ge=-1, description="queued at each caller before 503; -1: no limit")
    runtime_env: dict[str, Any] | None = Field(None, description="Ray runtime_env of the replicas")
    max_surge_percent: int = Field(100, ge=0, le=100, description=SURGE)

    @field_validator("num_replicas")
    @classmethod
    def _replicas(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError("num_replicas must be >= 1 or 'auto'")
        return v

    @model_validator(mode="after")
    def _autoscaling(self) -> ModelResources:
        if self.autoscaling_config is not None and self.num_replicas not in (1, "auto"):
            raise ValueError("autoscaling_config replaces num_replicas: leave num_replicas unset")
        return self

    @field_validator("autoscaling_config")
    @classmethod
    def _ray_autoscaling(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        return _checked_autoscaling(v)

    def actor_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"num_cpus": self.num_cpus}
        if self.num_gpus:
            opts["num_gpus"] = self.num_gpus
        if self.memory:
            opts["memory"] = self.memory
        if self.runtime_env:
            opts["runtime_env"] = self.runtime_env
        return opts


class TaskArgs(_Strict):
    """One task's serving: a champion, an optional challenger and how traffic splits."""

    champion: ArmArgs
    challenger: ArmArgs | None = None
    traffic: TrafficPolicy | None = Field(None, description="required with a challenger")
    loader: str | None = Field(None, description="module:function loading a version folder (default per task)")
    batching: Batching = Field(default_factory=Batching)
    resources: ModelResources = Field(default_factory=ModelResources)

    @field_validator("loader")
    @classmethod
    def _loader(cls, v: str | None) -> str | None:
        if v is not None and not _IMPORT.fullmatch(v):
            raise ValueError(f"loader {v!r} must be 'package.module:function'")
        return v

    @model_validator(mode="after")
    def _traffic(self) -> TaskArgs:
        if self.challenger is not None and self.traffic is None:
            raise ValueError("a challenger needs a traffic policy (traffic: {mode: ab | canary | shadow, weight: ...})")
        if self.challenger is None and self.traffic is not None:
            raise ValueError("traffic is set but there is no challenger to send it to")
        if self.batching.max_batch_size > self.resources.max_ongoing_requests:
            raise ValueError(
                f"batching.max_batch_size ({self.batching.max_batch_size}) exceeds resources.max_ongoing_requests "
                f"({self.resources.max_ongoing_requests}): a replica could never fill a batch"
            )
        return self

    def arms(self) -> dict[str, ArmArgs]:
        out = {"champion": self.champion}
        if self.challenger is not None:
            out["challenger"] = self.challenger
        return out

    def settings(self, arm: str) -> ModelSettings:
        """The initial ``user_config`` of one arm's deployment."""
        chosen = self.arms()[arm]
        return ModelSettings(**chosen.model_dump(exclude_none=True), **self.batching.model_dump())


class RecommendArgs(TaskArgs):
    users_uri: str | None = Field(
        None, description="parquet with user_id and items (list of item ids, oldest first): histories for user_id"
    )
    catalogue_uri: str | None = Field(
        None, description="parquet with item_id and optional category, item_text, median_price (filters, titles)"
    )


class _OptionalTaskArgs(TaskArgs):
    if_missing: Literal["error", "skip"] = Field(
        "error",
        description="skip: when the registry holds no such version, leave the task out (its route answers 503 "
        "naming it) instead of failing the deploy; lets one config serve whatever has been trained",
    )


class DemandArgs(_OptionalTaskArgs):
    pass


class RiskArgs(_OptionalTaskArgs):
    threshold: float | None = Field(None, gt=0, lt=1, description="flag orders at or above this probability (default: the model's)")


class Limits(_Strict):
    """Per-request limits (tighter than the API's hard caps); breaking one is a 413 or 422 naming the field."""

    max_body_bytes: int = Field(_DEFAULT_LIMITS["max_body_bytes"], ge=1024, le=64 * 1024 * 1024)
    max_history: int = Field(_DEFAULT_LIMITS["max_history"], ge=1, le=10_000)
    max_k: int = Field(_DEFAULT_LIMITS["max_k"], ge=1, le=1000)
    max_exclude: int = Field(_DEFAULT_LIMITS["max_exclude"], ge=0, le=10_000)
    max_demand_items: int = Field(_DEFAULT_LIMITS["max_demand_items"], ge=1, le=10_000)
    max_horizon: int = Field(_DEFAULT_LIMITS["max_horizon"], ge=1, le=366)
    max_orders: int = Field(_DEFAULT_LIMITS["max_orders"], ge=1, le=1000)
    max_order_lines: int = Field(_DEFAULT_LIMITS["max_order_lines"], ge=1, le=1000)
    max_events: int = Field(_DEFAULT_LIMITS["max_events"], ge=1, le=1000)
    # explain: true - recommendations explained, history items tried, contributors kept per item,
    # order lines explained, text tokens kept per line
    max_explain_items: int = Field(_DEFAULT_LIMITS["max_explain_items"], ge=1, le=1000)
    max_explain_history: int = Field(_DEFAULT_LIMITS["max_explain_history"], ge=1, le=1000)
    max_explain_contributors: int = Field(_DEFAULT_LIMITS["max_explain_contributors"], ge=1, le=100)
    max_explain_lines: int = Field(_DEFAULT_LIMITS["max_explain_lines"], ge=1, le=1000)
    max_explain_tokens: int = Field(_DEFAULT_LIMITS["max_explain_tokens"], ge=0, le=512)  # 0: text as a whole (cheap)


_KEY_HASH = re.compile(r"sha256:[0-9a-f]{64}")


class AuthArgs(_Strict):
    """Bearer API keys for ``/v1/*``: from an environment variable or a file of the ingress replica;
    inline keys only as sha256 hashes (a plain key in ``args`` shows in Ray's controller log).
    No key anywhere means no authentication, and the ingress logs a warning line saying so."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)  # an error never echoes a key

    api_keys: list[SecretStr] = Field(
        default_factory=list,
        description="sha256 hashes of accepted keys, 'sha256:<64 hex>' (`ecomine serve hash-key` prints one)",
    )
    api_keys_env: str | None = Field(
        "ECOMINE_API_KEYS", description="env variable with comma-separated keys; unset or empty: no keys from env"
    )
    api_keys_file: str | None = Field(
        None, description="a file with one key per line (e.g. a mounted Kubernetes secret), read by the ingress"
    )

    @field_validator("api_keys")
    @classmethod
    def _hashed(cls, keys: list[SecretStr]) -> list[SecretStr]:
        for n, key in enumerate(keys):
            if not _KEY_HASH.fullmatch(key.get_secret_value()):
                raise ValueError(
                    f"key {n} is not a sha256 hash: inline keys are written 'sha256:<64 hex>' (`ecomine serve "
                    "hash-key` prints one), since a plain key in args shows in Ray's controller log; put plain "
                    "keys in api_keys_env or api_keys_file"
                )
        return keys


class IngressArgs(_Strict):
    """The HTTP deployment. ``colocate: true`` runs every model arm inside the ingress replica
    instead of in deployments of their own: no hop between processes (the fastest choice on a
    small CPU machine), at the price of scaling arms together. Colocated arms keep batching (one
    queue, the largest max_batch_size of the arms) and swap in place through the Ingress
    deployment's ``user_config``: ``{<deployment name>: ModelSettings, ...}``."""

    colocate: bool = Field(False, description="run the model arms inside the ingress replica (one process)")
    num_cpus: float = Field(0.1, gt=0)
    num_replicas: int | Literal["auto"] = 1
    autoscaling_config: dict[str, Any] | None = None
    max_ongoing_requests: int = Field(256, ge=1)
    max_queued_requests: int = Field(-1, ge=-1)
    runtime_env: dict[str, Any] | None = None
    max_surge_percent: int = Field(100, ge=0, le=100, description=SURGE)
    model_timeout_s: float = Field(30.0, gt=0, description="longest wait for a model deployment's answer")
    max_in_flight: int | None = Field(
        None, ge=0,
        description="prediction requests (POST /v1/*) inside one ingress replica at once; more are answered at "
        "once with a JSON 503 and Retry-After. A request takes a slot only once its API key is checked and "
        "its body has arrived (body_timeout_s), so slow or unauthenticated clients hold none. Unset: what the model arms can hold "
        "(see serve.arm_options.admission_limit); 0 turns it off (Serve's own queue limits then answer overload)",
    )
    retry_after_s: int = Field(1, ge=1, le=3600, description="Retry-After (seconds) of an overload 503")
    body_timeout_s: float = Field(
        5.0, gt=0, le=300,
        description="a request body must arrive whole within this many seconds of its headers (else 408, the "
        "connection closed): a slow upload holds no admission slot and no model time",
    )
    shed_hold_s: float = Field(
        0.05, ge=0.0, le=1.0,
        description="an overload 503 is sent after this long (0: at once), so callers that retry at once "
        "without reading Retry-After come back at most 1/shed_hold_s times a second",
    )

    @model_validator(mode="after")
    def _admission(self) -> IngressArgs:
        if self.max_in_flight and self.max_in_flight >= self.max_ongoing_requests:
            raise ValueError(
                f"max_in_flight ({self.max_in_flight}) must be below max_ongoing_requests ({self.max_ongoing_requests}): "
                "Serve queues what the replica does not take, and its own queue-limit 503s (text/plain, no "
                "Retry-After, slow) would answer the overload instead"
            )
        return self

    @field_validator("autoscaling_config")
    @classmethod
    def _ray_autoscaling(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        return _checked_autoscaling(v)


class ObservabilityArgs(_Strict):
    log_requests: bool = Field(True, description="one log line per request (hashed user id)")
    user_hash_salt_env: str | None = Field(
        "ECOMINE_USER_HASH_SALT", description="env variable holding the secret salt of logged user-id hashes"
    )
    shadow_keep: int = Field(50, ge=1, le=10_000, description="shadow comparisons kept for GET /v1/models")
    require_salt: bool = Field(
        False, description="refuse to start when the salt variable is unset (production); false: a random "
        "per-replica salt and a warning line",
    )


class AppArgs(_Strict):
    """``args:`` of ``import_path: ecomine.serve.app:build``.

    Only ``registry`` and ``recommend`` are required; ``demand`` and ``risk`` are
    optional (their routes answer 503 until configured). A validation error names the
    field and never echoes the input (args carry keys; Ray prints the error in its logs).
    """

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    registry: str = Field(description="registry root: a folder (relative: to the cluster's working dir) or s3://")
    s3: S3Options | None = Field(None, description="S3 client options (default: the AWS environment)")
    recommend: RecommendArgs
    demand: DemandArgs | None = None
    risk: RiskArgs | None = None
    limits: Limits = Field(default_factory=Limits)
    auth: AuthArgs = Field(default_factory=AuthArgs)
    ingress: IngressArgs = Field(default_factory=IngressArgs)
    observability: ObservabilityArgs = Field(default_factory=ObservabilityArgs)
    live: LiveArgs = Field(default_factory=LiveArgs, description="POST /v1/events: the online history store and "
                           "the event log")
    check_versions: bool = Field(
        True, description="resolve every version, verify its files' sha256 and check ensemble vocabularies when the "
        "app is built"
    )

    @model_validator(mode="after")
    def _colocated_scaling(self) -> AppArgs:
        """Colocated arms live in the ingress replica: their own replica counts would be ignored."""
        if self.ingress.colocate:
            for name, task in self.tasks().items():
                res = task.resources
                if res.autoscaling_config is not None or res.num_replicas != 1:
                    field = "autoscaling_config" if res.autoscaling_config is not None else "num_replicas"
                    raise ValueError(
                        f"{name}.resources.{field}: with ingress.colocate true the {name} model runs inside the "
                        f"ingress replica and scales with it; set ingress.{field} instead, or ingress.colocate: false")
        return self

    def tasks(self) -> dict[str, TaskArgs]:
        """The configured tasks, by name."""
        return {name: t for name in TASKS if (t := getattr(self, name)) is not None}

    def loader(self, task: str) -> str:
        return self.tasks()[task].loader or DEFAULT_LOADERS[task]
