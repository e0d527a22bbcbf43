"""ecomine.serve: Ray Serve deployments, ingress and the typed app builder.

The last layer before the client: ``build(AppArgs)`` turns registered model
versions into a running Serve application (see ``ecomine.serve.app``). The
request/response models (``ecomine.api.schema``), configs, traffic, ranking,
security and observability helpers import without Ray; the Ray-bound names
(``build``, the deployments, ``Ingress``) are imported on first access, so
``import ecomine.api.schema`` stays light for the client SDK.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    # typed builder and its args
    "AppArgs",
    "build",
    "BuildError",
    # deployments (Ray)
    "Recommender",
    "DemandForecaster",
    "RiskScorer",
    "Ensemble",
    "Ingress",
    # configuration pieces
    "ArmArgs",
    "MemberArgs",
    "ModelSettings",
    "TaskArgs",
    "RecommendArgs",
    "DemandArgs",
    "RiskArgs",
    "Limits",
    "AuthArgs",
    "TrafficPolicy",
]

_WHERE = {
    "AppArgs": "ecomine.serve.config",
    "ArmArgs": "ecomine.serve.config",
    "MemberArgs": "ecomine.serve.config",
    "ModelSettings": "ecomine.serve.config",
    "TaskArgs": "ecomine.serve.config",
    "RecommendArgs": "ecomine.serve.config",
    "DemandArgs": "ecomine.serve.config",
    "RiskArgs": "ecomine.serve.config",
    "Limits": "ecomine.serve.config",
    "AuthArgs": "ecomine.serve.config",
    "TrafficPolicy": "ecomine.serve.traffic",
    "build": "ecomine.serve.app",
    "BuildError": "ecomine.serve.app",
    "Recommender": "ecomine.serve.deployments",
    "DemandForecaster": "ecomine.serve.deployments",
    "RiskScorer": "ecomine.serve.deployments",
    "Ensemble": "ecomine.serve.deployments",
    "Ingress": "ecomine.serve.ingress",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'ecomine.serve' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
