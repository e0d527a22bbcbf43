"""Evaluation results as plain JSON, for every task's report (metrics.json, the CLI's --json, the demo).

Beside the per-task evaluation modules (`recommend_metrics`, `demand_eval`, `risk_eval`),
whose `{name: metrics}` results this serialises.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["report_json"]


def _json_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    return value


def report_json(results: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``{name: evaluate_scorer(...)}`` as plain JSON types; NaN/inf become ``None``."""
    return _json_value(results)
