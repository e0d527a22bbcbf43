"""PipelineSpec: one retraining pipeline (`ecomine retrain`): window, challenger, gate, promotion, swap.

Read by `ecomine.retrain.pipeline`. A pipeline names the TrainSpec of its challenger (a
path or inline), the slice of data it sees (a window counted back from a
cut-off, and optionally another data ref: a new file or `s3://` prefix), how the
challenger starts (the champion's weights or scratch) and the gate it must pass
(`ecomine.retrain.gate`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ecomine.specs._base import SpecError, StrictModel, check_name, load_spec
from ecomine.specs.metrics import DEFAULT_METRIC, gate_metrics, metric_mode
from ecomine.specs.train import DataRef, DataWindow, TaskName, TrainSpec

__all__ = ["GuardSpec", "GateSpec", "PipelineSpec", "DEFAULT_GATE_METRIC", "DEFAULT_GUARDS", "GATE_TASKS", "gate_metrics"]

# The gate's primary metric by task, and the guards it keeps by default (metric -> relative tolerance).
DEFAULT_GATE_METRIC = DEFAULT_METRIC  # the gate judges on what training stops on
DEFAULT_GUARDS = {"recommend": {"hr@20": 0.02}, "risk": {"brier": 0.05}, "demand": {}}
# Tasks whose held-out units the pipeline can score for both versions today (ecomine.retrain.pipeline).
GATE_TASKS = ("recommend", "risk")


class GuardSpec(StrictModel):
    metric: str
    tolerance: float = Field(0.02, ge=0, lt=1, description="largest relative regression allowed (0.02 = 2 %)")


class GateSpec(StrictModel):
    """Promote only if the challenger beats the champion on `metric` by `min_improvement`, with a paired
    bootstrap interval over the held-out units (users for recommend), and no guard regresses."""

    metric: str | None = Field(None, description="primary metric (default: the task's: ndcg@10, pr_auc, pinball)")
    min_improvement: float = Field(
        0.0, ge=-1, lt=10, description="relative margin the interval's lower end must clear (0.01 = 1 %)"
    )
    confidence: float = Field(0.95, gt=0.5, lt=1, description="two-sided percentile interval")
    resamples: int = Field(1000, ge=100, le=100_000)
    seed: int = 0
    guards: list[GuardSpec] | None = Field(None, description="default: the task's (recommend: hr@20 within 2 %)")
    holdout_days: int | None = Field(
        30, ge=1, description="recommend: gate on users whose held-out (newest) purchase is in the last N days before "
        "the cut-off - what the new data changed (null: every held-out user); risk: the split's test period",
    )
    max_level_drop: float | None = Field(
        0.5, gt=0, lt=1, description="refuse when both versions score this much (relative) below the champion's "
        "score at its own promotion: the newest data looks broken (null: no floor)",
    )
    min_units: int = Field(
        50, ge=2, description="fewer held-out units than this: the challenger is refused (too little evidence)"
    )
    first_version: Literal["promote", "refuse"] = Field(
        "promote", description="when no champion holds the stage yet: promote the first challenger, or refuse"
    )


class PipelineSpec(StrictModel):
    """One retraining pipeline: build the window's data, train a challenger, gate it, promote, swap."""

    kind: Literal["pipeline"] = "pipeline"
    name: str = Field(description="pipeline name: run records live under <registry>/_retrain/<name>/")
    task: TaskName
    train: TrainSpec | str = Field(description="the challenger's TrainSpec: inline, or a YAML path (relative to this file)")
    data: DataRef | None = Field(None, description="replaces train.data (a new file, an s3:// prefix)")
    window: DataWindow | None = Field(None, description="the slice of the log the challenger sees (data.window)")
    warm_start: Literal["champion", "scratch"] = Field(
        "champion", description="champion: start from the champion's weights (item rows by id); scratch: fresh init"
    )
    stage: Literal["staging", "production"] = Field("production", description="the stage the champion holds")
    gate: GateSpec = Field(default_factory=GateSpec)
    registry: str | None = Field(None, description="default: train.run.registry")

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        return check_name("pipeline", v)

    @model_validator(mode="after")
    def _consistent(self) -> PipelineSpec:
        if isinstance(self.train, TrainSpec):
            self.check_train(self.train)
        return self

    def check_train(self, train: TrainSpec) -> None:
        if train.task != self.task:
            raise ValueError(f"train.task {train.task!r} does not match task {self.task!r}")
        if self.task not in GATE_TASKS:
            raise ValueError(
                f"task {self.task!r}: the retraining gate scores held-out units of {list(GATE_TASKS)} only so far "
                "(retrain it with `ecomine train` and promote by hand)"
            )
        known = gate_metrics(self.task, train.eval.ks)
        for where, metric in (("gate.metric", self.gate_metric()), *(
            (f"gate.guards[{i}].metric", g.metric) for i, g in enumerate(self.guards())
        )):
            if metric not in known:
                raise ValueError(f"{where}: task {self.task} does not report {metric!r}; it reports {sorted(known)}")

    def gate_metric(self) -> str:
        return self.gate.metric or DEFAULT_GATE_METRIC[self.task]

    def gate_mode(self) -> str:
        return metric_mode(self.gate_metric())

    def guards(self) -> list[GuardSpec]:
        if self.gate.guards is not None:
            return self.gate.guards
        return [GuardSpec(metric=m, tolerance=t) for m, t in DEFAULT_GUARDS[self.task].items()]

    def train_spec(self, source: str | Path | None = None) -> TrainSpec:
        """The challenger's TrainSpec with the pipeline's data and window applied (a path resolves
        against the pipeline file's folder). SpecError naming the field when it does not fit."""
        if isinstance(self.train, TrainSpec):
            spec = self.train
        else:
            path = Path(self.train)
            if not path.is_absolute() and source is not None:
                path = Path(source).parent / path
            spec = load_spec(path, TrainSpec)
            try:
                self.check_train(spec)
            except ValueError as exc:
                raise SpecError(f"{source or 'pipeline'}: {exc}") from None
        data = (self.data or spec.data).model_copy()
        if self.window is not None:
            data = data.model_copy(update={"window": self.window})
        update: dict[str, Any] = {"data": data}
        if self.registry is not None:
            update["run"] = spec.run.model_copy(update={"registry": self.registry})
        return TrainSpec.model_validate({**spec.model_dump(mode="json"), **{
            k: v.model_dump(mode="json") for k, v in update.items()
        }})

    def registry_root(self, train: TrainSpec) -> str:
        return self.registry or train.run.registry
