"""Typed specs: the YAML a user writes, validated by pydantic v2.

Shared by every layer (data, train, tuning, ensembles, serve). One module per
spec kind - `data` (DataSpec), `train` (TrainSpec), `tune` (TuneSpec),
`ensemble` (EnsembleSpec) - over the shared machinery in `_base`; everything is
re-exported here, so `from ecomine.specs import TrainSpec` is the one spelling.
`ecomine schema` prints their JSON Schema for editor completion.
"""

from __future__ import annotations

from pydantic import BaseModel

from ecomine.specs._base import SpecError, StrictModel, apply_overrides, dump_spec, parse_overrides, expand_uri, format_validation_error, load_spec
from ecomine.specs.data import (
    DEFAULT_NON_PRODUCT_ITEMS,
    DEFAULT_NON_PRODUCT_PATTERNS,
    CanonicalColumn,
    CleaningSpec,
    Condition,
    DataSpec,
    EventRule,
    EventType,
    SourceSpec,
)
from ecomine.specs.train import (
    DataRef,
    DataWindow,
    DemandEvalSpec,
    DemandLightGBMSpec,
    DemandModelSpec,
    EarlyStoppingSpec,
    EvalSpec,
    FromConfigBackbone,
    LoraSpec,
    ModelSpec,
    OptimSpec,
    RecommendModelSpec,
    RiskLightGBMSpec,
    RiskModelSpec,
    RiskSplitSpec,
    RiskThresholdSpec,
    RunSpec,
    ScalingSpec,
    SpecDataRef,
    SyntheticDataRef,
    TaskName,
    TrainSpec,
)
from ecomine.specs.metrics import DEFAULT_METRIC, Metric, gate_metrics, metric_catalogue, metric_mode, task_metrics
from ecomine.specs.tune import CampaignEnsembleSpec, SchedulerSpec, SearchDim, TuneSpec
from ecomine.specs.augment import AugmentSpec, CropSpec, MaskSpec, ReorderSpec, TrainAugmentSpec
from ecomine.specs.ensemble import EnsembleFitSpec, EnsembleMemberRef, EnsembleSpec
from ecomine.specs.pipeline import GateSpec, GuardSpec, PipelineSpec
from ecomine.specs.score import ScoreInput, ScoreSpec, TableInput, TrainingDataInput

__all__ = [
    "SpecError",
    "StrictModel",
    "EventType",
    "CanonicalColumn",
    "DEFAULT_NON_PRODUCT_ITEMS",
    "DEFAULT_NON_PRODUCT_PATTERNS",
    "Condition",
    "EventRule",
    "SourceSpec",
    "CleaningSpec",
    "DataSpec",
    "load_spec",
    "dump_spec",
    "apply_overrides",
    "parse_overrides",
    "expand_uri",
    "format_validation_error",
    "spec_models",
    "DataWindow",
    "SyntheticDataRef",
    "SpecDataRef",
    "DataRef",
    "FromConfigBackbone",
    "LoraSpec",
    "RecommendModelSpec",
    "EarlyStoppingSpec",
    "OptimSpec",
    "ScalingSpec",
    "RunSpec",
    "EvalSpec",
    "DemandEvalSpec",
    "DemandLightGBMSpec",
    "DemandModelSpec",
    "RiskThresholdSpec",
    "RiskSplitSpec",
    "RiskLightGBMSpec",
    "RiskModelSpec",
    "ModelSpec",
    "TaskName",
    "task_metrics",
    "metric_mode",
    "gate_metrics",
    "metric_catalogue",
    "Metric",
    "DEFAULT_METRIC",
    "TrainSpec",
    "SearchDim",
    "SchedulerSpec",
    "TuneSpec",
    "CampaignEnsembleSpec",
    "AugmentSpec",
    "CropSpec",
    "MaskSpec",
    "ReorderSpec",
    "TrainAugmentSpec",
    "EnsembleMemberRef",
    "EnsembleFitSpec",
    "EnsembleSpec",
    "GuardSpec",
    "GateSpec",
    "PipelineSpec",
    "TableInput",
    "TrainingDataInput",
    "ScoreInput",
    "ScoreSpec",
]


def spec_models() -> dict[str, type[BaseModel]]:
    """Every spec kind the CLI and `ecomine schema` know, by name."""
    return {"data": DataSpec, "train": TrainSpec, "tune": TuneSpec, "ensemble": EnsembleSpec, "pipeline": PipelineSpec, "score": ScoreSpec}
