"""The LightGBM members' settings (`model.lightgbm:` of a demand or risk TrainSpec).

Sits in ``ecomine.specs`` beside ``train`` (whose task model specs take one when
``model.forecaster`` / ``model.classifier`` is ``lightgbm``): the non-neural members an
ensemble borrows what a gradient-boosted model knows from. Kept apart so ``train`` stays
a room a reader holds in one sitting.
"""

from __future__ import annotations

from pydantic import Field

from ecomine.specs._base import StrictModel

__all__ = ["DemandLightGBMSpec", "RiskLightGBMSpec"]


class _BoosterSpec(StrictModel):
    """What the demand and risk LightGBM members share: the trees' shape and sampling, and threads."""

    learning_rate: float = Field(0.05, gt=0, le=1)
    num_leaves: int = Field(31, ge=2, description="leaves per tree")
    feature_fraction: float = Field(0.8, gt=0, le=1, description="share of features each tree sees")
    bagging_fraction: float = Field(0.8, gt=0, le=1, description="share of rows each tree sees")
    threads: int = Field(1, ge=0, description="LightGBM threads for fitting and serving (0: every core)")


class DemandLightGBMSpec(_BoosterSpec):
    """The LightGBM demand forecaster (`model.forecaster: lightgbm`): one booster per quantile level."""

    rounds: int = Field(300, ge=10, description="boosting rounds of each level's booster")
    min_data_in_leaf: int = Field(50, ge=1, description="training rows a leaf needs")
    max_rows: int = Field(300_000, ge=1000, description="training rows (window x step) seen, a seeded subsample")


class RiskLightGBMSpec(_BoosterSpec):
    """The LightGBM risk classifier (`model.classifier: lightgbm`): one booster over the raw RISK_FEATURES."""

    rounds: int = Field(500, ge=10, description="most boosting rounds (early-stopped on the validation log loss)")
    min_data_in_leaf: int = Field(100, ge=1, description="training lines a leaf needs")
    lambda_l2: float = Field(1.0, ge=0, description="L2 penalty on leaf values")
    early_stopping_rounds: int = Field(30, ge=1, description="rounds without a better validation log loss before stopping")
