"""TrainSpec: one training run of a task (data, model, optimisation, scaling, run, evaluation).

Read by `ecomine.train` (the runner, the loop, each task) and by `ecomine.tuning.campaign`,
which searches over its fields. The recommend model spec lives here; the demand and
risk model specs are in `demand_model` and `risk_model`, LoRA settings in `lora`,
booster settings in `boosters` (all re-exported here, so `ecomine.specs.train` still
names them).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from ecomine.specs._base import StrictModel, check_name, expand_uri, with_preset
from ecomine.specs.augment import TrainAugmentSpec
from ecomine.specs.demand_model import DEMAND_PRESETS, DemandEvalSpec, DemandLightGBMSpec, DemandModelSpec
from ecomine.specs.lora import LoraSpec
from ecomine.specs.metrics import DEFAULT_METRIC, metric_mode, task_metrics
from ecomine.specs.risk_model import RiskLightGBMSpec, RiskModelSpec, RiskSplitSpec, RiskThresholdSpec

__all__ = ["DataWindow", "SyntheticDataRef", "SpecDataRef", "DataRef", "FromConfigBackbone", "LoraSpec", "RECOMMEND_PRESETS", "DEMAND_PRESETS", "RecommendModelSpec",
           "EarlyStoppingSpec", "OptimSpec", "ScalingSpec", "RunSpec", "EvalSpec", "DemandEvalSpec",
           "DemandLightGBMSpec", "DemandModelSpec", "RiskThresholdSpec", "RiskSplitSpec", "RiskLightGBMSpec", "RiskModelSpec", "ModelSpec", "TaskName",
           "TrainSpec"]


class DataWindow(StrictModel):
    """Which slice of the log in time: the events a run (or a retraining pipeline) sees.

    `until` is the cut-off (exclusive: events before that UTC day; default the newest
    event); `last_days` counts back from it, `since` names the first day instead.
    """

    since: date | None = Field(None, description="first UTC day kept (inclusive)")
    until: date | None = Field(None, description="cut-off: events before this UTC day (default: every event)")
    last_days: int | None = Field(None, ge=1, description="days kept before the cut-off (instead of since)")

    @model_validator(mode="after")
    def _one_start(self) -> DataWindow:
        if self.since is not None and self.last_days is not None:
            raise ValueError("give since or last_days, not both")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError(f"since ({self.since}) must be before until ({self.until})")
        return self

    def describe(self) -> str:
        start = str(self.since) if self.since else (f"{self.last_days} days before" if self.last_days else "start")
        return f"{start} .. {self.until or 'newest'}"


class SyntheticDataRef(StrictModel):
    """The seeded synthetic log (the embedded default): generated, then cleaned."""

    kind: Literal["synthetic"]
    users: int = Field(1000, ge=10)
    items: int = Field(300, ge=10)
    days: int = Field(365, ge=14)
    seed: int = 0
    window: DataWindow | None = Field(None, description="keep only events in this time window")


class SpecDataRef(StrictModel):
    """A DataSpec YAML path or a packaged preset name (`online-retail`)."""

    kind: Literal["spec"]
    spec: str
    window: DataWindow | None = Field(None, description="keep only events in this time window")


DataRef = Annotated[SyntheticDataRef | SpecDataRef, Field(discriminator="kind")]


class FromConfigBackbone(StrictModel):
    """A transformer built from a config (random init), sized here."""

    kind: Literal["from_config"]
    arch: Literal["gpt2", "bert"] = Field(
        "gpt2", description="gpt2: causal next-item model; bert: bidirectional masked-item model (BERT4Rec)"
    )
    hidden: int = Field(64, ge=8)
    layers: int = Field(2, ge=1)
    heads: int = Field(2, ge=1)
    max_len: Annotated[int, Field(ge=2)] | Literal["auto"] = Field(
        50, description="items of context; auto: the training sequences' mean length rounded up to a multiple of 50, "
        "within 50-200 - SASRec's choice by sequence length (50 on Amazon and Steam, 200 on MovieLens-1m); "
        "train.recommend_task.resolved_max_len")
    dropout: Annotated[float, Field(ge=0, lt=1)] | Literal["auto"] = Field(
        "auto", description="auto: 0.5 on sparse logs (interactions / (users x items) under 1 %: short sequences over "
        "a large catalogue), else 0.3 - SASRec's choice (0.2 on MovieLens-1m at 4.8 %, 0.5 on Amazon and Steam at "
        "0.01-0.08 %); train.recommend_task.resolved_dropout")

    @model_validator(mode="after")
    def _heads_divide(self) -> FromConfigBackbone:
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        return self



# The recommender's named sizes: a spec's `preset` and `models.recommend.recommend_small()` / `recommend_base()`.
RECOMMEND_PRESETS: dict[str, dict[str, int]] = {
    "recommend_small": {"hidden": 64, "layers": 2, "heads": 2, "max_len": 50},  # CPU-sized
    "recommend_base": {"hidden": 256, "layers": 4, "heads": 4, "max_len": 200},  # GPU-sized
}


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
    item_tokens: bool = Field(
        True, description="learned vectors of the words / attribute ids in item texts, added to each item's vector "
        "(models.item_tokens); a log without item texts trains without them"
    )
    repeat: bool = Field(True, description="learned pointer to the user's own earlier items")
    exclude_history: bool = Field(False, description="served recommendations leave out items already bought")
    loss: Literal["auto", "full_softmax", "sampled_softmax"] = Field(
        "auto", description="auto: full_softmax up to 50,000 items, sampled_softmax above (a full softmax over a "
        "300k-item catalogue costs ~80 s and ~20 GB per CPU step); arch bert always full_softmax"
    )
    num_negatives: int = Field(1000, ge=1, description="sampled_softmax only")
    mask_prob: float = Field(
        0.4, gt=0, lt=1, description="arch bert: share of items masked per training window (0.4: Amazon Toys 0.0568 "
        "test NDCG@10 against 0.0505 at 0.2, 0.98x the causal model; BERT4Rec took 0.2-0.6 by data set; README)")
    lora: LoraSpec = Field(default_factory=LoraSpec)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        return with_preset(data, RECOMMEND_PRESETS, into="backbone", extra={"kind": "from_config"})


    @model_validator(mode="after")
    def _bert_fits(self) -> RecommendModelSpec:
        if self.backbone.arch == "bert" and self.loss == "sampled_softmax":
            raise ValueError("backbone.arch bert trains with loss full_softmax")
        return self


class EarlyStoppingSpec(StrictModel):
    metric: str | None = Field(
        None,
        description="validation metric; default per task: recommend ndcg@10 (also hr@K, mrr, new_ndcg@K ...), "
        "demand pinball, risk pr_auc; loss for any task",
    )
    mode: Literal["max", "min"] | None = Field(None, description="default: min for loss/pinball/wape/mase/brier, else max")
    patience: int = Field(3, ge=1, description="epochs without improvement before stopping")


class OptimSpec(StrictModel):
    """AdamW with warm-up and a schedule; training stops on the epoch cap, a validation plateau or a time budget."""

    lr: float = Field(1e-3, gt=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="warm-up as a share of all steps (epochs x steps)")
    warmup_epochs: float | None = Field(
        None, ge=0, description="warm-up in epochs instead of warmup_ratio (what a constant schedule under a "
        "large epoch cap needs: 5 % of 200 epochs would be 10 epochs of warm-up)"
    )
    schedule: Literal["linear", "cosine", "constant", "plateau"] = Field(
        "cosine", description="after warm-up: linear / cosine decay to zero at the last epoch; constant; or "
        "plateau: constant, times plateau_factor after every plateau_patience epochs without a validation gain "
        "(constant and plateau: epochs is a cap, early_stopping or max_minutes ends the run)"
    )
    plateau_factor: float = Field(0.5, gt=0, lt=1, description="schedule plateau: lr multiplier at each plateau")
    plateau_patience: int = Field(2, ge=1, description="schedule plateau: epochs without a gain before the lr drops")
    grad_clip: float | None = Field(1.0, gt=0)
    ema_epochs: float | None = Field(
        None, gt=0, description="validate, keep and register an exponential moving average of the weights over "
        "about this many epochs (decay 1 - 1 / (ema_epochs x steps per epoch)) instead of the last step's weights; "
        "None: the weights as trained"
    )
    epochs: int = Field(10, ge=1, description="passes over the training data (with schedule constant: the cap)")
    batch_size: int = Field(128, ge=1)
    early_stopping: EarlyStoppingSpec | None = Field(default_factory=EarlyStoppingSpec)
    max_minutes: float | None = Field(
        None, gt=0, description="wall-clock budget of the training loop: no epoch starts that the last epoch's "
        "time says would end past it; the best checkpoint is kept and the run says it stopped on budget"
    )
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
    registry: str = Field(
        "${ECOMINE_REGISTRY:-registry}", validate_default=True,
        description="model registry root: a folder or s3:// URI (${VAR:-default} expands; the default is "
        "$ECOMINE_REGISTRY, else ./registry, as every other verb reads it)",
    )
    register_model: bool = Field(True, description="register the evaluated model in the registry")
    tags: list[str] = Field(default_factory=list)
    warm_start: str | None = Field(
        None,
        description="a version folder (e.g. the champion's, fetched) whose weights initialise this run: tensors "
        "of the same shape are copied, item rows matched by item id (new items keep their fresh init)",
    )
    fail_once_at_epoch: int | None = Field(
        None, ge=1, description="fault drill: the loop raises once at this epoch (tests of max_failures)"
    )

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str | None) -> str | None:
        return v if v is None else check_name("run", v)

    @field_validator("registry")
    @classmethod
    def _registry_expanded(cls, v: str) -> str:
        return expand_uri(v)


class EvalSpec(StrictModel):
    ks: list[int] = Field(default_factory=lambda: [5, 10, 20])
    min_len: int = Field(3, ge=3, description="users with fewer items are trained on, not evaluated")
    max_users: int | None = Field(None, ge=1, description="evaluate a seeded sample of users")


TaskName = Literal["recommend", "demand", "risk"]
ModelSpec = Annotated[RecommendModelSpec | DemandModelSpec | RiskModelSpec, Field(discriminator="kind")]

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
    augment: TrainAugmentSpec | None = Field(None, description="augmented copies of the training split (off: none)")

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
        if self.augment is not None and self.augment.enabled() and self.task != "recommend":
            raise ValueError(f"augment.sequences applies to task recommend, not {self.task!r}")
        if getattr(self.model, "forecaster", None) == "ensemble" and not self.run.register_model:
            raise ValueError("run.register_model: model.forecaster ensemble registers its members and their mixture; "
                             "it cannot run with register_model false")
        es = self.optim.early_stopping
        if es is not None and es.metric is not None:
            known = task_metrics(self.task, self.eval.ks)
            if es.metric not in known:
                raise ValueError(f"optim.early_stopping.metric {es.metric!r} is not one of {sorted(known)}")
        return self

    def watch(self) -> tuple[str, str]:
        """(validation metric, mode) used for early stopping and best-checkpoint choice."""
        es = self.optim.early_stopping
        metric = (es.metric if es and es.metric else None) or DEFAULT_METRIC[self.task]
        mode = (es.mode if es and es.mode else None) or metric_mode(metric)
        return metric, mode
