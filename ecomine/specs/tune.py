"""TuneSpec: a tuning campaign over a TrainSpec (the campaigns live in top-level tune/*.yaml).

Read by `ecomine.tuning.campaign` (`ecomine tune`).
"""

from __future__ import annotations

import re
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator

from ecomine.specs._base import StrictModel, check_name
from ecomine.specs.ensemble import EnsembleFitSpec

__all__ = ["SearchDim", "SchedulerSpec", "CampaignEnsembleSpec", "TuneSpec"]


_DIM_KINDS = ("choice", "uniform", "loguniform", "randint")
_EXPONENT_ONLY = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _yaml11_float(value: Any) -> Any:
    """`1e-2` as a float: YAML 1.1 (PyYAML) reads a float without a dot as a string, and a trial
    would carry `"1e-2"` into its config and the results table."""
    return float(value) if isinstance(value, str) and _EXPONENT_ONLY.fullmatch(value) else value


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
            return {kind: [_yaml11_float(v) for v in value] if isinstance(value, list) else value}
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

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema, handler):
        # the schema says what _from_text accepts too, or an editor flags every `loguniform 1e-4 3e-3`
        mapping = handler.resolve_ref_schema(handler(core_schema))
        text = {"type": "string", "pattern": rf"^\s*({'|'.join(_DIM_KINDS)}) ", "description": "e.g. loguniform 1e-4 3e-3"}
        return {"anyOf": [mapping, text], "description": mapping.get("description", "")}

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


class CampaignEnsembleSpec(StrictModel):
    """`ensemble:` of a campaign: its exported top trials built into one ensemble version (`ecomine ensemble build`)."""

    top_k: int | None = Field(None, ge=2, description="members: the best top_k exported trials (default: all exported)")
    fit: EnsembleFitSpec = Field(default_factory=EnsembleFitSpec)
    promote: Literal["staging", "production"] | None = None


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
    ensemble: CampaignEnsembleSpec | None = Field(None, description="build the exported trials into one ensemble")
    seed: int = Field(0, description="seeds the search: the same campaign file samples the same trials, in the same order")

    @model_validator(mode="after")
    def _ensemble_fits(self) -> TuneSpec:
        if self.ensemble is not None:
            k = self.ensemble.top_k or self.export_top_k
            if self.export_top_k < 2 or k > self.export_top_k:
                raise ValueError(f"ensemble: needs export_top_k >= 2 and top_k <= export_top_k "
                                 f"(export_top_k {self.export_top_k}, top_k {self.ensemble.top_k})")
        return self

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        return check_name("campaign", v, lower=True)
