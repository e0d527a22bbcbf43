"""RiskModelSpec: the risk task's model (`model:` of a risk TrainSpec), its split and its threshold rule.

Sits in ``ecomine.specs`` beside ``train``, whose ModelSpec union takes it; read by
``ecomine.train.risk_task`` and ``ecomine.models.risk*``. Kept apart so ``train`` stays a
room a reader holds in one sitting.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ecomine.specs._base import StrictModel, with_preset
from ecomine.specs.boosters import RiskLightGBMSpec
from ecomine.specs.lora import LoraSpec

__all__ = ["RISK_PRESETS", "RiskThresholdSpec", "RiskSplitSpec", "RiskLightGBMSpec", "RiskModelSpec"]


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


# The risk scorer's named sizes (a spec's `preset`; fields the spec sets itself win): CPU-sized - the
# frozen encoder, each line's vector computed once, a small head - and GPU-sized - LoRA adapters, longer text.
RISK_PRESETS: dict[str, dict[str, object]] = {
    "risk_small": {"mode": "frozen", "max_length": 64, "hidden": [128]},
    "risk_base": {"mode": "lora", "max_length": 128, "hidden": [256]},
}


class RiskModelSpec(StrictModel):
    """Return / cancellation risk of an order line: text encoder + numeric features -> MLP -> logit, or LightGBM."""

    kind: Literal["risk"] = "risk"
    preset: Literal["risk_small", "risk_base"] | None = Field(
        None, description="named sizes (RISK_PRESETS): risk_small (frozen encoder, CPU), risk_base (LoRA, GPU); "
        "fields set in the spec win"
    )
    classifier: Literal["encoder", "lightgbm"] = Field(
        "encoder", description="encoder: the text encoder + MLP head, trained by Ray Train; lightgbm: a booster over "
        "the numeric features fitted on the driver (no Ray, no text), e.g. the non-neural member of an ensemble"
    )
    lightgbm: RiskLightGBMSpec | None = Field(None, description="classifier lightgbm only: its settings (unset: the defaults)")
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

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: object) -> object:
        return with_preset(data, RISK_PRESETS)

    @model_validator(mode="after")
    def _classifier_fields(self) -> RiskModelSpec:
        if self.lightgbm is not None and self.classifier != "lightgbm":
            raise ValueError(f"lightgbm: settings of classifier lightgbm, but classifier is {self.classifier!r}")
        if self.classifier == "lightgbm" and not self.numeric_features:
            raise ValueError("numeric_features: false leaves classifier lightgbm nothing to read (it sees no text)")
        return self
