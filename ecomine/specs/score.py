"""ScoreSpec: which registered version scores which table, and where the parquet goes.

Read by `ecomine.score.batch` (`ecomine score <score.yaml>`): top-k for every user
(recommend), forecasts for every item (demand), a risk probability for every
order line (risk), through Ray Data with the model in an actor pool.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from ecomine.specs._base import StrictModel, expand_uri
from ecomine.specs.train import DataRef, TaskName

__all__ = ["TableInput", "TrainingDataInput", "ScoreInput", "ScoreSpec"]


class TableInput(StrictModel):
    """A table file: recommend `user_id` + `items` (list, oldest first: `ecomine data build`'s
    user_sequences.parquet); demand `item_id` (distinct ids are forecast); risk one order line
    per row: `item_id`, `quantity`, optional `order_id`, `user_id`, `ts`, `country`, `price`."""

    kind: Literal["table"] = "table"
    uri: str = Field(description="parquet | csv | jsonl file: path or s3://; ${VAR:-default} is expanded")
    format: Literal["parquet", "csv", "jsonl"] | None = Field(None, description="inferred from the suffix when omitted")


class TrainingDataInput(StrictModel):
    """Events cleaned as for training: recommend scores every user's purchase sequence, demand every item."""

    kind: Literal["training_data"] = "training_data"
    data: DataRef | None = Field(None, description="a data ref (synthetic | spec); omitted: the one the version was trained on")


def _input_kind(v: Any) -> str | None:
    # `kind:` may be left out of a table input: `inputs: {uri: features/user_sequences.parquet}`.
    if isinstance(v, dict):
        return v.get("kind", "table" if "uri" in v else None)
    return getattr(v, "kind", None)


ScoreInput = Annotated[
    Annotated[TableInput, Tag("table")] | Annotated[TrainingDataInput, Tag("training_data")],
    Discriminator(_input_kind, custom_error_type="input_kind",
                  custom_error_message="inputs: set kind (table | training_data), or uri for a table"),
]

# Fields that belong to one task only: set to a non-default value on another task's spec they are an
# error, not ignored (a default passes, so a full dump loads back).
_TASK_FIELDS = {"k": "recommend", "max_history": "recommend", "exclude_history": "recommend",
                "horizon": "demand", "quantiles": "demand"}


class ScoreSpec(StrictModel):
    """Batch scoring of every user / item / order line by one registered version (an ensemble version too)."""

    kind: Literal["score"] = "score"
    task: TaskName
    registry: str = Field("registry", description="registry root: folder or s3://; ${VAR:-default} is expanded")
    version: str = Field("production", description="version id | staging | production | latest (resolved once, at start)")
    loader: str | None = Field(None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
                               description="package.module:function loading a version folder (as Serve's task loader); null: the task's")
    inputs: ScoreInput
    output: str = Field(description="folder or s3:// prefix for the parquet parts; must be new or empty; ${VAR:-default} is expanded")
    # recommend
    k: int = Field(10, ge=1, le=1000, description="recommend: items per user")
    max_history: int = Field(500, ge=1, le=10_000, description="recommend: last items of a history scored (as Serve's limits.max_history)")
    exclude_history: bool | None = Field(None, description="recommend: leave out items in the history (null: the model's default)")
    # demand
    horizon: int | None = Field(None, ge=1, le=366, description="demand: periods ahead in the model's frequency "
                                "(unset: the horizon it was trained for)")
    quantiles: list[float] = Field(default_factory=lambda: [0.1, 0.5, 0.9], min_length=1, description="demand: quantiles in (0, 1)")
    # Ray Data
    actors: int = Field(1, ge=1, le=256, description="model actors in the pool (each loads the version once)")
    num_cpus: float = Field(1.0, gt=0, description="logical CPUs per actor (fractional on small machines)")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per actor (0: CPU); the model moves to the GPU Ray gives it")
    batch_size: int = Field(256, ge=1, le=1_000_000, description="rows per model call")
    rows_per_file: int = Field(500_000, ge=1, description="rows per parquet part written")

    @field_validator("registry", "output")
    @classmethod
    def _expand(cls, v: str) -> str:
        return expand_uri(v)  # ${VAR:-default}, as every other spec's URIs

    @field_validator("quantiles")
    @classmethod
    def _quantiles(cls, v: list[float]) -> list[float]:
        if any(not 0.0 < q < 1.0 for q in v):
            raise ValueError(f"quantiles must lie strictly between 0 and 1, got {v}")
        if len(set(v)) != len(v):
            raise ValueError(f"quantiles must be distinct, got {v}")
        return sorted(v)

    @model_validator(mode="after")
    def _task_fields(self) -> ScoreSpec:
        for name in sorted(self.model_fields_set & set(_TASK_FIELDS)):
            default = type(self).model_fields[name].get_default(call_default_factory=True)
            if _TASK_FIELDS[name] != self.task and getattr(self, name) != default:
                raise ValueError(f"{name} applies to task {_TASK_FIELDS[name]}, not {self.task}")
        if self.task == "risk" and isinstance(self.inputs, TrainingDataInput):
            raise ValueError("inputs: risk scores an order-lines file (kind: table), not training_data")
        return self
