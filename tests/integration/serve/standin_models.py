"""Stand-in demand and risk models for the serve tests, behind the real loader protocol.

The demand and risk model modules (``ecomine.models.demand`` / ``.risk``) are
being written elsewhere; until they land, these small, deterministic models let
the tests exercise DemandForecaster, RiskScorer, their ensembles and
``/v1/insights`` end to end. A version folder holds one ``standin.json`` that the
registry seals like any other file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

__all__ = ["write_demand_folder", "write_risk_folder", "load_forecaster", "load_risk_model"]


def write_demand_folder(folder: Path, *, level: float, items: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "standin.json").write_text(json.dumps({"kind": "demand", "level": level, "items": items}))
    return folder


def write_risk_folder(folder: Path, *, scale: float, threshold: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "standin.json").write_text(json.dumps({"kind": "risk", "scale": scale, "threshold": threshold}))
    return folder


class StandInForecaster:
    """Known items: level * (index + 1) units per period, spread by quantile; unknown: 0."""

    freq = "1d"
    max_horizon = 28

    def __init__(self, level: float, items: list[str]) -> None:
        self.level = level
        self.index = {item: n for n, item in enumerate(items)}

    def known_items(self, item_ids: list[str]) -> list[bool]:
        return [i in self.index for i in item_ids]

    def forecast(self, item_ids: list[str], horizon: int, quantiles: list[float]) -> np.ndarray:
        base = np.array([self.level * (self.index[i] + 1) if i in self.index else 0.0 for i in item_ids])
        spread = np.array(quantiles) * 2.0  # p50 -> 1.0 x base
        return np.broadcast_to(base[:, None, None] * spread[None, :, None], (len(item_ids), len(quantiles), horizon)).copy()


class StandInRiskModel:
    """p = 1 - exp(-scale * units), so bigger orders are riskier; a fixed threshold."""

    def __init__(self, scale: float, threshold: float) -> None:
        self.scale = scale
        self.threshold = threshold

    def score(self, orders: list[dict]) -> np.ndarray:
        units = [sum(int(line["quantity"]) for line in o["lines"]) for o in orders]
        return np.array([1.0 - math.exp(-self.scale * u) for u in units])


def load_forecaster(folder: str | Path) -> StandInForecaster:
    data = json.loads((Path(folder) / "standin.json").read_text())
    return StandInForecaster(float(data["level"]), list(data["items"]))


def load_risk_model(folder: str | Path) -> StandInRiskModel:
    data = json.loads((Path(folder) / "standin.json").read_text())
    return StandInRiskModel(float(data["scale"]), float(data["threshold"]))
