"""The OpenAPI document a deployment serves: FastAPI's, with what this deployment enforces.

Sits in ``ecomine.serve`` under ``ingress`` (which installs ``deployment_openapi`` as its
app's ``openapi``): the request models carry the API's hard caps, a deployment's
``limits:`` are tighter, and a caller (or a schema fuzzer) should read the tighter ones;
the API key appears as a Bearer ``securitySchemes`` entry.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from ecomine.api.schema import API_PREFIX
from ecomine.serve.config import AppArgs

__all__ = ["deployment_openapi"]

# (schema, property, JSON-schema keyword, Limits field): what the deployment enforces below the API's hard caps
_ENFORCED = [
    (schema, prop, key, limit)
    for schema in ("RecommendRequest", "InsightsRequest")
    for prop, key, limit in (("k", "maximum", "max_k"), ("history", "maxItems", "max_history"),
                             ("exclude", "maxItems", "max_exclude"))
] + [
    ("InsightsRequest", "horizon", "maximum", "max_horizon"), ("InsightsRequest", "candidates", "maximum", "max_k"),
    ("DemandRequest", "item_ids", "maxItems", "max_demand_items"), ("DemandRequest", "horizon", "maximum", "max_horizon"),
    ("RiskRequest", "orders", "maxItems", "max_orders"), ("Order", "lines", "maxItems", "max_order_lines"),
    ("EventsRequest", "events", "maxItems", "max_events"),
]


def _cap(prop: dict[str, Any], key: str, value: int) -> None:
    for node in [prop, *prop.get("anyOf", [])]:
        if key in node:
            node[key] = min(node[key], value)


def deployment_openapi(app: FastAPI, args: AppArgs, keys: bool) -> dict[str, Any]:
    """FastAPI's schema with this deployment's limits in place of the API's hard caps, and the
    API key as a Bearer ``securitySchemes`` entry (required on ``/v1`` routes when keys are set)."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    limits = args.limits.model_dump()
    components = schema.setdefault("components", {})
    for name, prop, key, limit in _ENFORCED:
        found = components.get("schemas", {}).get(name, {}).get("properties", {}).get(prop)
        if found is not None:
            _cap(found, key, limits[limit])
    components["securitySchemes"] = {"apiKey": {
        "type": "http", "scheme": "bearer",
        "description": "an API key: 'Authorization: Bearer <key>' (auth.api_keys_env / auth.api_keys_file)",
    }}
    if keys:
        for path, ops in schema.get("paths", {}).items():
            if path.startswith(API_PREFIX + "/"):
                for op in ops.values():
                    op["security"] = [{"apiKey": []}]
    app.openapi_schema = schema
    return schema
