"""The shared request/response models: validation that names fields, and no server imports."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from ecomine.api import schema as api


def _locs(exc: ValidationError) -> list[tuple]:
    return [tuple(e["loc"]) for e in exc.errors()]


def test_recommend_request_rules() -> None:
    assert api.RecommendRequest(user_id="u").k == 10
    assert api.RecommendRequest(history=[]).history == []
    with pytest.raises(ValidationError, match="give user_id or history"):
        api.RecommendRequest(k=3)
    with pytest.raises(ValidationError) as e:
        api.RecommendRequest.model_validate({"user_id": "u", "exlude": ["a"]})
    assert ("exlude",) in _locs(e.value)
    with pytest.raises(ValidationError) as e:
        api.RecommendRequest(user_id="u", k=api.HARD_MAX_K + 1)
    assert ("k",) in _locs(e.value)
    with pytest.raises(ValidationError) as e:
        api.RecommendRequest(history=["ok", ""])
    assert ("history", 1) in _locs(e.value)


def test_demand_request_quantiles() -> None:
    assert api.DemandRequest(item_ids=["a"], quantiles=[0.9, 0.1]).quantiles == [0.1, 0.9]
    for bad in ([0.0], [1.0], [0.5, 0.5], [float("nan")], []):
        with pytest.raises(ValidationError) as e:
            api.DemandRequest(item_ids=["a"], quantiles=bad)
        assert _locs(e.value)[0][0] == "quantiles"
    with pytest.raises(ValidationError):
        api.DemandRequest(item_ids=[])


def test_order_validation() -> None:
    order = api.Order(lines=[{"item_id": "a", "quantity": 2, "price": 1.5}])
    assert order.lines[0].quantity == 2 and order.ts is None
    for line, field in (({"item_id": "a", "quantity": 0}, "quantity"), ({"item_id": "a", "price": -1}, "price"),
                        ({"item_id": "a", "price": float("inf")}, "price")):
        with pytest.raises(ValidationError) as e:
            api.Order(lines=[line])
        assert ("lines", 0, field) in _locs(e.value)
    with pytest.raises(ValidationError):
        api.RiskRequest(orders=[])


def test_responses_tolerate_fields_from_a_newer_server() -> None:
    body = {"items": [{"item_id": "a", "score": 0.5, "new_field": 1}], "model": "m", "versions": ["v"], "shiny": True}
    resp = api.RecommendResponse.model_validate(body)
    assert resp.items[0].item_id == "a" and resp.fallback is False


def test_insights_defaults() -> None:
    req = api.InsightsRequest(user_id="u")
    assert (req.horizon, req.demand_weight, req.risk_weight, req.candidates) == (None, 0.5, 0.5, None)  # the model's horizon


def test_api_module_imports_neither_ray_nor_torch() -> None:
    code = (
        "import sys, ecomine.api.schema, ecomine.api.status, ecomine.serve.traffic, ecomine.serve.config, ecomine.serve;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('ray', 'torch', 'fastapi')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("module", [
    "api.schema", "api.status", "serve.traffic", "serve.config", "serve.security", "serve.observability",
    "predict.ranking", "predict.runtime", "predict.answers", "predict.combine", "predict.explain", "predict.state",
    "predict.tasks", "predict.recommend_task", "predict.demand_task", "predict.risk_task",
])
def test_all_is_complete(module: str) -> None:
    import importlib
    import inspect

    mod = importlib.import_module(f"ecomine.{module}")
    public = {
        name for name, value in vars(mod).items()
        if not name.startswith("_") and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", None) == mod.__name__
    }
    assert public <= set(mod.__all__), public - set(mod.__all__)
    assert all(hasattr(mod, name) for name in mod.__all__)


def test_package_all_resolves_lazily() -> None:
    import ecomine.serve as serve

    assert "AppArgs" in dir(serve) and serve.AppArgs.__name__ == "AppArgs"
    with pytest.raises(AttributeError):
        serve.NoSuchThing  # noqa: B018


@pytest.mark.parametrize(
    ("model", "body", "loc"),
    [
        (api.RiskRequest, {"orders": [{"lines": [{"item_id": "a", "price": False}]}]}, ("orders", 0, "lines", 0, "price")),
        (api.RiskRequest, {"orders": [{"lines": [{"item_id": "a", "quantity": True}]}]}, ("orders", 0, "lines", 0, "quantity")),
        (api.RiskRequest, {"orders": [{"lines": [{"item_id": "a", "quantity": "3"}]}]}, ("orders", 0, "lines", 0, "quantity")),
        (api.RiskRequest, {"orders": [{"ts": 0, "lines": [{"item_id": "a"}]}]}, ("orders", 0, "ts")),  # not 1970
        (api.RiskRequest, {"orders": [{"ts": 1.7e9, "lines": [{"item_id": "a"}]}]}, ("orders", 0, "ts")),
        (api.RecommendRequest, {"user_id": "u", "k": "10"}, ("k",)),
        (api.RecommendRequest, {"user_id": "u", "k": 10.5}, ("k",)),
        (api.RecommendRequest, {"user_id": "u", "exclude_history": "true"}, ("exclude_history",)),
        (api.DemandRequest, {"item_ids": ["a"], "horizon": True}, ("horizon",)),
        (api.DemandRequest, {"item_ids": ["a"], "quantiles": ["0.5"]}, ("quantiles", 0)),
        (api.InsightsRequest, {"user_id": "u", "demand_weight": True}, ("demand_weight",)),
    ],
)
def test_no_silent_coercion(model, body, loc) -> None:
    with pytest.raises(ValidationError) as e:
        model.model_validate(body)
    assert loc in _locs(e.value), _locs(e.value)


def test_integers_are_numbers_and_nan_says_so() -> None:
    line = api.OrderLine.model_validate({"item_id": "a", "price": 2, "quantity": 3})
    assert line.price == 2.0 and line.quantity == 3
    assert api.OrderLine.model_validate({"item_id": "a", "quantity": 3.0}).quantity == 3  # JSON's 3.0 is 3
    for value, word in ((float("nan"), "NaN is not allowed"), (float("inf"), "Infinity is not allowed"),
                        (float("-inf"), "Infinity is not allowed")):
        with pytest.raises(ValidationError) as e:
            api.OrderLine.model_validate({"item_id": "a", "price": value})
        assert word in str(e.value) and "greater than" not in str(e.value)
        with pytest.raises(ValidationError, match=word):
            api.DemandRequest.model_validate({"item_ids": ["a"], "quantiles": [value]})


def test_demand_horizon_defaults_to_the_served_model() -> None:
    assert api.DemandRequest(item_ids=["a"]).horizon is None
    assert api.InsightsRequest(user_id="u").horizon is None


def test_limits_response_matches_the_deployment_limits() -> None:
    from ecomine.serve.config import Limits

    assert set(api.LimitsResponse.model_fields) == set(Limits.model_fields)
    assert api.LimitsResponse().model_dump() == Limits().model_dump() == api.DEFAULT_LIMITS
