"""EnsembleSpec: which registered versions form an ensemble, and how their combination is fitted.

Read by `ecomine.ensemble.build` (`ecomine ensemble build <ensemble.yaml>`), which
registers the result as a version of kind `ensemble`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ecomine.specs._base import StrictModel
from ecomine.specs.train import TaskName

__all__ = ["EnsembleMemberRef", "EnsembleFitSpec", "EnsembleSpec"]

_REF_FIELDS = ("version", "tag", "campaign")


class EnsembleMemberRef(StrictModel):
    """Members by one of: a version (id | staging | production | latest), a tag, or a campaign's exports."""

    version: str | None = Field(None, description="version id | staging | production | latest")
    tag: str | None = Field(None, description="every version carrying this tag (then the best `top`)")
    campaign: str | None = Field(None, description="a tuning campaign's registered trials (tagged with its name)")
    top: int = Field(1, ge=1, le=16, description="with tag/campaign: the best `top` by their validation metric")
    group: str | None = Field(
        None, description="demand: members of one group (e.g. seeds of one model) are averaged with equal weights "
        "and share one fitted weight; unset: a member is its own group"
    )

    @model_validator(mode="after")
    def _one(self) -> EnsembleMemberRef:
        set_ = [k for k in _REF_FIELDS if getattr(self, k) is not None]
        if len(set_) != 1:
            raise ValueError(f"set exactly one of {list(_REF_FIELDS)}, got {set_ or 'none'}")
        if self.version is not None and self.top != 1:
            raise ValueError("top applies to tag/campaign, not to one version")
        return self


class EnsembleFitSpec(StrictModel):
    """How member outputs are combined (see `ecomine.predict.combine`)."""

    method: Literal["likelihood", "uniform"] = Field(
        "likelihood", description="likelihood: simplex weights fitted on validation (pinball for demand); uniform: equal"
    )
    shrink: Literal["cv", "none"] = Field(
        "cv", description="demand: cv shrinks the fitted weights toward uniform by as much as leave-one-validation-"
        "origin-out pinball asks (0 where the origins agree on the weights, 1 where a fit on one origin fails on the "
        "next); none keeps the fit. Recommend and risk: unused"
    )
    max_rows: int = Field(5000, ge=100, description="validation rows used to fit (recommend: scores are [rows, items])")
    seed: int = 0


class EnsembleSpec(StrictModel):
    """An ensemble of registered versions of one task, fitted on their shared validation split."""

    kind: Literal["ensemble"] = "ensemble"
    task: TaskName
    registry: str = Field("registry", description="registry root: folder or s3://")
    members: list[EnsembleMemberRef] = Field(min_length=1, max_length=16)
    fit: EnsembleFitSpec = Field(default_factory=EnsembleFitSpec)
    tags: list[str] = Field(default_factory=list, description="extra tags of the registered ensemble version")
    promote: Literal["staging", "production"] | None = Field(None, description="promote the new version to this stage")
