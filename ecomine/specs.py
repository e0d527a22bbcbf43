"""Typed specs: the YAML a user writes, validated by pydantic v2.

Shared by every layer (data, train, tuning, serve). A spec loads from YAML with
errors that name the field path and the offending value, and dumps back to YAML
unchanged. `ecomine schema` prints their JSON Schema for editor completion.
"""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "SpecError",
    "StrictModel",
    "EventType",
    "Condition",
    "EventRule",
    "SourceSpec",
    "CleaningSpec",
    "DataSpec",
    "load_spec",
    "dump_spec",
    "expand_uri",
    "format_validation_error",
    "spec_models",
    "SyntheticDataRef",
    "SpecDataRef",
    "FromConfigBackbone",
    "LoraSpec",
    "RecommendModelSpec",
    "EarlyStoppingSpec",
    "OptimSpec",
    "ScalingSpec",
    "RunSpec",
    "EvalSpec",
    "DemandEvalSpec",
    "DemandModelSpec",
    "RiskThresholdSpec",
    "RiskSplitSpec",
    "RiskModelSpec",
    "ModelSpec",
    "TaskName",
    "task_metrics",
    "TrainSpec",
    "SearchDim",
    "SchedulerSpec",
    "TuneSpec",
]

EventType = Literal["view", "click", "cart", "purchase", "return", "review"]
CanonicalColumn = Literal[
    "user_id", "item_id", "ts", "event", "quantity", "price", "order_id", "item_text"
]

# Stock codes that are fees, postage or adjustments, not products (Online Retail
# README); the patterns catch families such as gift vouchers and DCGS samples.
DEFAULT_NON_PRODUCT_ITEMS = [
    "POST", "DOT", "M", "m", "C2", "D", "S", "AMAZONFEE", "BANK CHARGES", "CRUK",
    "PADS", "B", "TEST001", "TEST002", "ADJUST", "ADJUST2",
]
DEFAULT_NON_PRODUCT_PATTERNS = [r"^gift_\d+", r"^DCGS", r"^(?i:test)"]


class SpecError(ValueError):
    """A spec could not be loaded: the message names the file, field path and value."""


class StrictModel(BaseModel):
    """Base for every spec: unknown keys are errors (a typo must not pass silently)."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class Condition(StrictModel):
    """A predicate on one column; exactly one test is set."""

    column: str = Field(description="canonical column or kept attribute name")
    equals: str | float | int | None = None
    starts_with: str | None = None
    matches: str | None = Field(None, description="regular expression (search)")
    in_: list[str | int | float] | None = Field(None, alias="in")
    not_in: list[str | int | float] | None = None
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    is_null: bool | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    @model_validator(mode="after")
    def _one_test(self) -> Condition:
        tests = [k for k in _CONDITION_TESTS if getattr(self, k) is not None]
        if len(tests) != 1:
            raise ValueError(
                f"condition on '{self.column}' needs exactly one test of "
                f"{sorted(_alias(t) for t in _CONDITION_TESTS)}, got {sorted(_alias(t) for t in tests)}"
            )
        if self.matches is not None:
            try:
                re.compile(self.matches)
            except re.error as e:
                raise ValueError(f"matches: invalid regular expression {self.matches!r}: {e}") from None
        return self

    def describe(self) -> str:
        test = next(k for k in _CONDITION_TESTS if getattr(self, k) is not None)
        return f"{self.column} {_alias(test)} {getattr(self, test)!r}"


_CONDITION_TESTS = ("equals", "starts_with", "matches", "in_", "not_in", "gt", "ge", "lt", "le", "is_null")


def _alias(name: str) -> str:
    return "in" if name == "in_" else name


class EventRule(StrictModel):
    """`when` a condition holds, the row becomes `event`, or is dropped with a reason."""

    when: Condition
    event: EventType | None = None
    drop: str | None = Field(None, description="drop matching rows, counted under this reason")

    @model_validator(mode="after")
    def _one_action(self) -> EventRule:
        if (self.event is None) == (self.drop is None):
            raise ValueError("an event rule sets exactly one of 'event' or 'drop'")
        return self


class SourceSpec(StrictModel):
    """One input file/URI and how its columns map onto the canonical events."""

    uri: str = Field(description="path, file:// or s3:// URI; ${VAR:-default} is expanded")
    format: Literal["csv", "parquet", "jsonl"] | None = Field(
        None, description="inferred from the suffix when omitted"
    )
    columns: dict[CanonicalColumn, str] = Field(
        description="canonical column -> source column (user_id, item_id and ts required)"
    )
    keep: dict[str, str] = Field(
        default_factory=dict, description="attribute name -> source column kept beside the events"
    )
    ts_format: str | None = Field(None, description="strptime format when ts is text")
    ts_timezone: str = Field("UTC", description="time zone of naive timestamps")
    event_values: dict[str, EventType] = Field(
        default_factory=dict, description="source event value -> canonical event"
    )
    csv_separator: str = ","

    @field_validator("columns")
    @classmethod
    def _required_columns(cls, v: dict[str, str]) -> dict[str, str]:
        missing = [c for c in ("user_id", "item_id", "ts") if c not in v]
        if missing:
            raise ValueError(f"columns must map {missing}")
        return v

    @field_validator("keep")
    @classmethod
    def _keep_not_canonical(cls, v: dict[str, str]) -> dict[str, str]:
        clash = sorted(set(v) & set(get_args(CanonicalColumn)) | ({"linked_order_id"} & set(v)))
        if clash:
            raise ValueError(f"keep names clash with canonical columns {clash}")
        return v

    def resolved_format(self) -> str:
        if self.format:
            return self.format
        suffix = expand_uri(self.uri).rsplit(".", 1)[-1].lower()
        if suffix in ("csv", "parquet", "jsonl"):
            return suffix
        if suffix in ("ndjson", "json"):
            return "jsonl"
        raise ValueError(f"cannot infer format of {self.uri!r}; set 'format'")


class CleaningSpec(StrictModel):
    """What cleaning drops or changes; every row it touches is counted by reason."""

    drop_missing_user: bool = True
    drop_duplicates: bool = Field(True, description="exact duplicate event rows")
    non_product_items: list[str] = Field(default_factory=lambda: list(DEFAULT_NON_PRODUCT_ITEMS))
    non_product_patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_NON_PRODUCT_PATTERNS))
    drop_non_positive_price: bool = True
    drop_non_positive_quantity: bool = Field(
        True, description="after return quantities are made positive"
    )
    max_quantity: int | None = Field(
        10_000, ge=1, description="lines above this many units are outliers (null: keep all)"
    )
    link_returns: bool = Field(True, description="tie each return to the purchase it cancels")

    @field_validator("non_product_patterns")
    @classmethod
    def _patterns_compile(cls, v: list[str]) -> list[str]:
        for p in v:
            try:
                re.compile(p)
            except re.error as e:
                raise ValueError(f"invalid regular expression {p!r}: {e}") from None
        return v


class DataSpec(StrictModel):
    """Where the events come from and how to make them canonical and clean."""

    kind: Literal["data"] = "data"
    name: str = "events"
    sources: list[SourceSpec] = Field(min_length=1)
    default_event: EventType = Field("purchase", description="event of rows no rule/column sets")
    event_rules: list[EventRule] = Field(default_factory=list, description="first match wins")
    dedupe_overlap_on: str | None = Field(
        None,
        description="column (e.g. order_id): rows of a key already present in an earlier "
        "source are dropped (files that overlap in time)",
    )
    filters: list[Condition] = Field(
        default_factory=list, description="rows must satisfy all of these"
    )
    cleaning: CleaningSpec = Field(default_factory=CleaningSpec)


_ENV = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def expand_uri(uri: str) -> str:
    """Expand `${VAR}` and `${VAR:-default}`; an unset VAR without default is an error."""

    def sub(m: re.Match[str]) -> str:
        value = os.environ.get(m.group(1))
        if value is None:
            if m.group(2) is None:
                raise SpecError(f"{uri!r}: environment variable {m.group(1)} is not set")
            return m.group(2)
        return value

    return _ENV.sub(sub, uri)


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per problem: `source: field.path: message (got value)`."""
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "<root>"
        got = e.get("input")
        shown = repr(got) if not isinstance(got, dict) else "{...}"
        if len(shown) > 80:
            shown = shown[:77] + "..."
        lines.append(f"{source}: {path}: {e['msg']} (got {shown})")
    return "; ".join(lines)


M = TypeVar("M", bound=BaseModel)


def load_spec(path: str | Path, model: type[M], *, overrides: dict[str, Any] | None = None) -> M:
    """Load a YAML file into `model`; SpecError names the file, field path and value."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise SpecError(f"{p}: spec file not found") from None
    except OSError as e:
        raise SpecError(f"{p}: cannot read spec file: {e.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise SpecError(f"{p}:{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
    if raw is None:
        raise SpecError(f"{p}: spec file is empty")
    if not isinstance(raw, dict):
        raise SpecError(f"{p}: spec must be a mapping at the top level, got {type(raw).__name__}")
    if overrides:
        raw = _apply_overrides(raw, overrides)
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise SpecError(format_validation_error(e, str(p))) from None


def _apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set dotted paths (`optim.lr`) in a nested dict (used by the CLI and Tune)."""
    import copy

    out = copy.deepcopy(raw)
    for dotted, value in overrides.items():
        node = out
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise SpecError(f"override {dotted!r}: {key!r} is not a mapping")
        node[leaf] = value
    return out


def dump_spec(spec: BaseModel) -> str:
    """YAML text that loads back into an equal spec."""
    # exclude_defaults keeps the YAML as short as what a user writes; loading
    # fills the same defaults back, so the round trip is exact.
    data = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)



# --------------------------------------------------------------------------- training

class SyntheticDataRef(StrictModel):
    """The seeded synthetic log (the embedded default): generated, then cleaned."""

    kind: Literal["synthetic"]
    users: int = Field(1000, ge=10)
    items: int = Field(300, ge=10)
    days: int = Field(365, ge=14)
    seed: int = 0


class SpecDataRef(StrictModel):
    """A DataSpec YAML path or a packaged preset name (`online-retail`)."""

    kind: Literal["spec"]
    spec: str


DataRef = Annotated[SyntheticDataRef | SpecDataRef, Field(discriminator="kind")]


class FromConfigBackbone(StrictModel):
    """A transformer built from a config (random init), sized here."""

    kind: Literal["from_config"]
    arch: Literal["gpt2"] = "gpt2"
    hidden: int = Field(64, ge=8)
    layers: int = Field(2, ge=1)
    heads: int = Field(2, ge=1)
    max_len: int = Field(50, ge=2, description="items of context")
    dropout: float = Field(0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _heads_divide(self) -> FromConfigBackbone:
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        return self


class LoraSpec(StrictModel):
    enabled: bool = False
    rank: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)


class RecommendModelSpec(StrictModel):
    """The sequential recommender: backbone, knowledge transfer, repeats, loss."""

    kind: Literal["recommend"] = "recommend"
    preset: Literal["recommend_small", "recommend_base"] | None = Field(
        None, description="named sizes; explicit backbone fields override"
    )
    backbone: FromConfigBackbone = Field(default_factory=lambda: FromConfigBackbone(kind="from_config"))
    item_init: Literal["random", "text"] = Field(
        "random", description="text: item embeddings from the text encoder's vectors of item titles"
    )
    text_encoder: str = Field("default", description="default | local folder | s3:// prefix | hub id")
    repeat: bool = Field(True, description="learned pointer to the user's own earlier items")
    exclude_history: bool = Field(False, description="served recommendations leave out items already bought")
    loss: Literal["full_softmax", "sampled_softmax"] = "full_softmax"
    num_negatives: int = Field(1000, ge=1, description="sampled_softmax only")
    lora: LoraSpec = Field(default_factory=LoraSpec)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset"):
            sizes = {
                "recommend_small": {"hidden": 64, "layers": 2, "heads": 2, "max_len": 50},
                "recommend_base": {"hidden": 256, "layers": 4, "heads": 4, "max_len": 200},
            }.get(data["preset"])
            if sizes is not None:
                given = data.get("backbone") or {}
                data = {**data, "backbone": {"kind": "from_config", **sizes, **given}}
        return data


class EarlyStoppingSpec(StrictModel):
    metric: str | None = Field(
        None,
        description="validation metric; default per task: recommend ndcg@10 (also hr@K, mrr, new_ndcg@K ...), "
        "demand pinball, risk pr_auc; loss for any task",
    )
    mode: Literal["max", "min"] | None = Field(None, description="default: min for loss/pinball/wape/mase/brier, else max")
    patience: int = Field(3, ge=1, description="epochs without improvement before stopping")


class OptimSpec(StrictModel):
    """AdamW with warm-up and a schedule."""

    lr: float = Field(1e-3, gt=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    schedule: Literal["linear", "cosine", "constant"] = "cosine"
    grad_clip: float | None = Field(1.0, gt=0)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1)
    early_stopping: EarlyStoppingSpec | None = Field(default_factory=EarlyStoppingSpec)
    seed: int = 0


class ScalingSpec(StrictModel):
    """Ray Train workers."""

    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0)
    mixed_precision: Literal["no", "fp16", "bf16"] = Field("no", description="GPU only")

    @model_validator(mode="after")
    def _precision_needs_gpu(self) -> ScalingSpec:
        if self.mixed_precision != "no" and not self.use_gpu:
            raise ValueError("mixed_precision needs use_gpu: true")
        return self


class RunSpec(StrictModel):
    """Where the run lives, how it checkpoints and recovers, where the model goes."""

    name: str | None = Field(None, description="run name; the same name resumes an interrupted run")
    storage: str = Field("runs", description="Ray Train storage: a local folder or s3:// URI")
    checkpoint_every: int = Field(1, ge=1, description="epochs between checkpoints")
    max_failures: int = Field(0, ge=-1, description="worker failures to recover from (-1: unlimited)")
    registry: str = Field("registry", description="model registry root: a folder or s3:// URI")
    register_model: bool = Field(True, description="register the evaluated model in the registry")
    tags: list[str] = Field(default_factory=list)
    fail_once_at_epoch: int | None = Field(
        None, ge=1, description="fault drill: the loop raises once at this epoch (tests of max_failures)"
    )

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", v):
            raise ValueError(f"run name {v!r} must be letters, digits, '.', '_' or '-'")
        return v


class EvalSpec(StrictModel):
    ks: list[int] = Field(default_factory=lambda: [5, 10, 20])
    min_len: int = Field(3, ge=3, description="users with fewer items are trained on, not evaluated")
    max_users: int | None = Field(None, ge=1, description="evaluate a seeded sample of users")


class DemandEvalSpec(StrictModel):
    """Rolling-origin evaluation of the demand task (test = the last `test_periods`)."""

    test_periods: int | None = Field(
        None, ge=1, description="periods at the end held out for test origins (default: 8 weeks, i.e. 56 daily / 8 weekly)"
    )
    origin_every: int | None = Field(
        None, ge=1, description="periods between test origins (default: 7 daily, 1 weekly)"
    )
    valid_origins: int = Field(2, ge=1, description="validation origins just before the test period")
    train_stride: int = Field(1, ge=1, description="periods between the origins of training windows")
    zero_window_keep: float = Field(
        0.1, ge=0, le=1, description="share of all-zero training windows kept (sampled, seeded)"
    )
    lightgbm: bool = Field(True, description="fit the LightGBM lag-feature baselines (L1 p50, p10/p90 quantiles)")
    lightgbm_rounds: int = Field(300, ge=10, description="boosting rounds of each LightGBM baseline")
    lightgbm_max_rows: int = Field(300_000, ge=1000, description="training rows LightGBM sees (seeded subsample)")


class DemandModelSpec(StrictModel):
    """Demand forecaster: PatchTST encoder + quantile head over a global item panel (task: demand)."""

    kind: Literal["demand"] = "demand"
    preset: Literal["demand_small", "demand_base"] | None = Field(
        None, description="named backbone sizes; explicit fields override"
    )
    freq: Literal["1d", "1w"] = Field("1d", description="period: UTC days or ISO weeks (Monday start)")
    horizon: int = Field(14, ge=1, le=90, description="periods forecast from each origin (the served maximum)")
    context_length: int = Field(56, ge=4, description="periods of history the encoder reads")
    quantiles: list[float] = Field(
        default_factory=lambda: [0.1, 0.5, 0.9], min_length=1, description="trained quantile levels, sorted, include 0.5"
    )
    top_items: int | None = Field(500, ge=1, description="model the N items with most units in the training window (null: all)")
    min_history: int = Field(
        8, ge=0, description="periods with sales in the training window below which an item gets the fallback profile"
    )
    d_model: int = Field(32, ge=8, description="PatchTST width")
    layers: int = Field(2, ge=1, description="PatchTST encoder layers")
    heads: int = Field(2, ge=1, description="attention heads")
    patch_length: int = Field(7, ge=1, description="periods per patch")
    patch_stride: int = Field(7, ge=1, description="periods between patch starts")
    dropout: float = Field(0.1, ge=0, lt=1)
    item_dim: int = Field(16, ge=1, description="item embedding width (id 0: unknown item)")
    head_hidden: int = Field(64, ge=8, description="hidden width of the per-step quantile head")
    item_dropout: float = Field(0.1, ge=0, lt=1, description="training share of windows whose item id is hidden (teaches id 0)")
    eval: DemandEvalSpec = Field(default_factory=DemandEvalSpec)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset"):
            sizes = {
                "demand_small": {"d_model": 32, "layers": 2, "heads": 2},
                "demand_base": {"d_model": 64, "layers": 3, "heads": 4},
            }.get(data["preset"])
            if sizes is not None:
                data = {**sizes, **data}
        return data

    @field_validator("quantiles")
    @classmethod
    def _quantiles_ok(cls, v: list[float]) -> list[float]:
        bad = [q for q in v if not 0.0 < q < 1.0]
        if bad:
            raise ValueError(f"quantiles must lie in (0, 1), got {bad}")
        if any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError(f"quantiles must be sorted ascending and distinct, got {v}")
        if 0.5 not in v:
            raise ValueError(f"quantiles must include 0.5 (the point forecast), got {v}")
        return v

    @model_validator(mode="after")
    def _shapes(self) -> DemandModelSpec:
        if self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by heads ({self.heads})")
        if self.patch_length > self.context_length:
            raise ValueError(f"patch_length ({self.patch_length}) exceeds context_length ({self.context_length})")
        return self


class RiskThresholdSpec(StrictModel):
    """How the decision threshold is chosen on the validation split (exactly one rule)."""

    target_precision: float | None = Field(
        None, gt=0, lt=1, description="lowest threshold whose validation precision reaches this (most recall)"
    )
    cost_ratio: float | None = Field(
        None, gt=0, description="false-negative cost / false-positive cost: the threshold of least validation cost"
    )

    @model_validator(mode="after")
    def _one_rule(self) -> RiskThresholdSpec:
        if (self.target_precision is None) == (self.cost_ratio is None):
            raise ValueError("threshold sets exactly one of target_precision or cost_ratio")
        return self


class RiskSplitSpec(StrictModel):
    """Temporal holdout. Unset dates count back from the log's last event, so any span works:
    test_end = end - horizon, test_start = test_end - test_days, train_end = test_start - horizon."""

    train_end: date | None = Field(None, description="training (and validation) purchases are before this day")
    label_cutoff: date | None = Field(
        None, description="training/validation labels must have closed by this day (default: test_start)"
    )
    test_start: date | None = Field(None, description="first day of test purchases")
    test_end: date | None = Field(None, description="test purchases are before this day")
    test_days: int = Field(60, ge=1, description="length of the default test window")
    valid_days: int = Field(30, ge=1, description="the last days before train_end are the validation split")

    @model_validator(mode="after")
    def _ordered(self) -> RiskSplitSpec:
        if self.train_end and self.test_start and self.train_end > self.test_start:
            raise ValueError(f"train_end {self.train_end} must not be after test_start {self.test_start}")
        if self.test_start and self.test_end and self.test_start >= self.test_end:
            raise ValueError(f"test_start {self.test_start} must be before test_end {self.test_end}")
        return self


class RiskModelSpec(StrictModel):
    """Return / cancellation risk of an order line: text encoder + numeric features -> MLP -> logit."""

    kind: Literal["risk"] = "risk"
    text_encoder: str = Field("default", description="default | local folder | s3:// prefix | hub id")
    mode: Literal["frozen", "lora", "full"] = Field(
        "frozen", description="frozen: pooled text vectors computed once, only the head trains; "
        "lora: peft adapters on query/value + head; full: every weight trains"
    )
    lora: LoraSpec = Field(default_factory=lambda: LoraSpec(enabled=True), description="mode: lora only")
    text: Literal["line", "item"] = Field(
        "line", description="line: the whole order line with the customer's history as text; item: the item "
        "title only (few unique texts: what makes the frozen encoder affordable on large logs)"
    )
    max_length: int = Field(64, ge=8, le=512, description="tokens per text")
    hidden: list[int] = Field(default_factory=lambda: [128], description="head hidden layer sizes ([] = linear)")
    dropout: float = Field(0.1, ge=0, lt=1, description="head dropout")
    numeric_features: bool = Field(
        True, description="concat standardised signed-log1p RISK_FEATURES and missing indicators to the text vector"
    )
    pos_weight: float | Literal["auto"] = Field(
        1.0, description="BCE weight of positives (auto: negatives/positives of the training split); "
        "its log is subtracted from the logit so probabilities stay calibrated"
    )
    negative_sample: float = Field(
        1.0, gt=0, le=1, description="share of training negatives kept; log(share) is added back to the logit"
    )
    max_train_lines: int | None = Field(
        None, ge=10, description="cap on training lines after negative sampling (seeded; all positives kept first)"
    )
    calibration: Literal["temperature", "platt", "isotonic", "none"] = Field(
        "temperature", description="fitted on the validation split after training"
    )
    threshold: RiskThresholdSpec = Field(
        default_factory=lambda: RiskThresholdSpec(cost_ratio=10.0), description="decision threshold rule"
    )
    horizon_days: int = Field(60, ge=1, description="a line is positive if returned within this many days")
    label: Literal["item_return", "linked_return"] = Field(
        "item_return", description="item_return: the customer returns/cancels the same item within the horizon "
        "(the issue's label); linked_return: only the return cleaning linked to this line's order"
    )
    split: RiskSplitSpec = Field(default_factory=RiskSplitSpec)
    encode_batch_size: int = Field(128, ge=1, description="texts per encoder forward when precomputing vectors")

    @field_validator("pos_weight")
    @classmethod
    def _pos_weight_positive(cls, v: float | str) -> float | str:
        if not isinstance(v, str) and not v > 0:
            raise ValueError(f"pos_weight must be > 0 or 'auto', got {v}")
        return v

    @field_validator("hidden")
    @classmethod
    def _hidden_positive(cls, v: list[int]) -> list[int]:
        if any(h < 1 for h in v):
            raise ValueError(f"hidden sizes must be >= 1, got {v}")
        return v


TaskName = Literal["recommend", "demand", "risk"]
ModelSpec = Annotated[RecommendModelSpec | DemandModelSpec | RiskModelSpec, Field(discriminator="kind")]

# Validation metrics each task reports (without the `val_` prefix) and their direction.
_LOWER_IS_BETTER = {"loss", "pinball", "wape", "mase", "brier"}
_DEFAULT_METRIC = {"recommend": "ndcg@10", "demand": "pinball", "risk": "pr_auc"}


def task_metrics(task: str, ks: list[int]) -> set[str]:
    """Names a TrainSpec may early-stop on for `task`."""
    if task == "recommend":
        base = {f"{m}@{k}" for m in ("ndcg", "hr") for k in ks} | {"mrr"}
        return base | {f"new_{m}" for m in base} | {"loss"}
    if task == "demand":
        return {"loss", "pinball", "wape", "mase", "coverage"}
    return {"loss", "roc_auc", "pr_auc", "brier"}


class TrainSpec(StrictModel):
    """One training run: data, model, optimisation, scaling, run settings."""

    kind: Literal["train"] = "train"
    task: TaskName = "recommend"
    data: DataRef
    model: ModelSpec = Field(default_factory=RecommendModelSpec)
    optim: OptimSpec = Field(default_factory=OptimSpec)
    scaling: ScalingSpec = Field(default_factory=ScalingSpec)
    run: RunSpec = Field(default_factory=RunSpec)
    eval: EvalSpec = Field(default_factory=EvalSpec)

    @model_validator(mode="before")
    @classmethod
    def _model_kind_from_task(cls, data: Any) -> Any:
        """`model:` needs no `kind:`: it is the task's (a mismatch is still an error)."""
        if isinstance(data, dict):
            task = data.get("task", "recommend")
            model = data.get("model")
            if model is None:
                data = {**data, "model": {"kind": task}}
            elif isinstance(model, dict) and "kind" not in model:
                data = {**data, "model": {**model, "kind": task}}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> TrainSpec:
        if self.model.kind != self.task:
            raise ValueError(f"model.kind {self.model.kind!r} does not match task {self.task!r}")
        es = self.optim.early_stopping
        if es is not None and es.metric is not None:
            known = task_metrics(self.task, self.eval.ks)
            if es.metric not in known:
                raise ValueError(f"optim.early_stopping.metric {es.metric!r} is not one of {sorted(known)}")
        return self

    def watch(self) -> tuple[str, str]:
        """(validation metric, mode) used for early stopping and best-checkpoint choice."""
        es = self.optim.early_stopping
        metric = (es.metric if es and es.metric else None) or _DEFAULT_METRIC[self.task]
        mode = (es.mode if es and es.mode else None) or ("min" if metric in _LOWER_IS_BETTER else "max")
        return metric, mode


# --------------------------------------------------------------------------- tuning

_DIM_KINDS = ("choice", "uniform", "loguniform", "randint")


class SearchDim(StrictModel):
    """One dimension of a search space: exactly one of choice / uniform / loguniform / randint."""

    choice: list[Any] | None = None
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = Field(None, description="[low, high) integers")

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        """`loguniform 1e-4 3e-3` / `choice [1, 2, 4]` as one string, like the campaign YAML allows."""
        if isinstance(data, str):
            kind, _, rest = data.strip().partition(" ")
            if kind not in _DIM_KINDS:
                raise ValueError(f"unknown search kind {kind!r}; use one of {list(_DIM_KINDS)}")
            value = yaml.safe_load(rest) if rest.strip().startswith("[") else [yaml.safe_load(v) for v in rest.split()]
            return {kind: value}
        return data

    @model_validator(mode="after")
    def _valid(self) -> SearchDim:
        set_ = [k for k in _DIM_KINDS if getattr(self, k) is not None]
        if len(set_) != 1:
            raise ValueError(f"a search dimension sets exactly one of {list(_DIM_KINDS)}, got {set_}")
        if self.choice is not None and not self.choice:
            raise ValueError("choice is empty")
        for k in ("uniform", "loguniform", "randint"):
            v = getattr(self, k)
            if v is not None and not v[0] < v[1]:
                raise ValueError(f"{k}: low ({v[0]}) must be < high ({v[1]})")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError(f"loguniform: low must be > 0, got {self.loguniform[0]}")
        return self

    def kind(self) -> str:
        return next(k for k in _DIM_KINDS if getattr(self, k) is not None)

    def endpoints(self) -> list[Any]:
        """Values that bound the dimension (validated against the TrainSpec before any trial)."""
        if self.choice is not None:
            return list(self.choice)
        lo, hi = getattr(self, self.kind())
        return [lo, hi - 1] if self.randint is not None else [lo, hi]


class SchedulerSpec(StrictModel):
    kind: Literal["asha", "pbt", "fifo"] = "asha"
    grace_period: int = Field(1, ge=1, description="ASHA: epochs every trial gets")
    reduction_factor: float = Field(2, gt=1, description="ASHA: keep 1/reduction_factor per rung")
    perturbation_interval: int = Field(2, ge=1, description="PBT: epochs between exploit/explore")


class TuneSpec(StrictModel):
    """A tuning campaign over a TrainSpec (the campaigns live in top-level tune/*.yaml)."""

    kind: Literal["tune"] = "tune"
    name: str = Field(description="campaign name: tags the registered versions, names the run folder")
    base: str = Field(description="TrainSpec YAML, relative to this file")
    overrides: dict[str, Any] = Field(default_factory=dict, description="fixed dotted-path changes to the base")
    space: dict[str, SearchDim] = Field(min_length=1, description="dotted path -> search dimension")
    metric: str | None = Field(None, description="validation metric (default: the base spec's)")
    mode: Literal["max", "min"] | None = None
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    search: Literal["random", "optuna"] = "random"
    num_samples: int = Field(8, ge=1)
    max_concurrent: int = Field(2, ge=1)
    trial_cpus: float = Field(0.1, gt=0, description="CPUs of each trial's driver (its workers ask for their own)")
    time_budget_s: float | None = Field(None, gt=0)
    storage: str = Field("tune_runs", description="campaign folder (local) or s3:// URI")
    export_top_k: int = Field(3, ge=0, description="best trials registered, tagged with the campaign name")
    seed: int = 0

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,63}", v):
            raise ValueError(f"campaign name {v!r} must be lower-case letters, digits, '.', '_' or '-'")
        return v


def spec_models() -> dict[str, type[BaseModel]]:
    """Every spec kind the CLI and `ecomine schema` know, by name."""
    return {"data": DataSpec, "train": TrainSpec, "tune": TuneSpec}
