"""Every route of a fully configured app on loopback: valid input, invalid input, auth, limits, shadow."""

from __future__ import annotations

import math
import time

import httpx
import pytest

from ecomine.api.schema import DemandResponse, InsightsResponse, RecommendResponse, RiskResponse, ScoredItem
from tests.integration.serve.conftest import API_KEY, FILE_KEY, ServeTarget, serve_log_lines

pytestmark = pytest.mark.integration


def _user_with_history(full: ServeTarget, serving_data, n: int = 3) -> tuple[str, list[str]]:
    user, items = next((u, i) for u, i in serving_data.users.items() if len(i) >= n)
    return user, items


# --------------------------------------------------------------------------- recommend


def test_recommend_known_user(full: ServeTarget, serving_data) -> None:
    user, _ = _user_with_history(full, serving_data)
    r = full.post("/v1/recommend", {"user_id": user, "k": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    # the route skips FastAPI's response validation (hot path): the body must still be exactly the model
    assert set(body) == set(RecommendResponse.model_fields)
    assert all(set(item) == set(ScoredItem.model_fields) for item in body["items"])
    RecommendResponse.model_validate(body)
    assert body["fallback"] is False and body["fallback_reason"] is None
    assert body["variant"] == "champion" and body["model"] == "recommend/rec-a" and body["versions"] == ["rec-a"]
    items = body["items"]
    assert len(items) == 7 and len({i["item_id"] for i in items}) == 7
    scores = [i["score"] for i in items]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    assert all(i["title"] and i["category"] in serving_data.categories and i["price"] > 0 for i in items)
    assert r.headers["x-ecomine-variant"] == "champion" and r.headers["x-request-id"] == body["request_id"]


def test_recommend_unknown_user_falls_back_to_popular(full: ServeTarget) -> None:
    r = full.post("/v1/recommend", {"user_id": "no-such-user", "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["fallback"] is True and "unknown user" in body["fallback_reason"]
    scores = [i["score"] for i in body["items"]]
    assert len(scores) == 5 and scores[0] == 1.0 and scores == sorted(scores, reverse=True)


def test_recommend_explicit_history_reports_unknown_items(full: ServeTarget, serving_data) -> None:
    history = [serving_data.items[3], "NOT-AN-ITEM", serving_data.items[5]]
    r = full.post("/v1/recommend", {"history": history, "k": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["fallback"] is False and body["unknown_items"] == ["NOT-AN-ITEM"]
    only_unknown = full.post("/v1/recommend", {"history": ["NOT-AN-ITEM"]}).json()
    assert only_unknown["fallback"] is True and "none of the history" in only_unknown["fallback_reason"]


def test_recommend_exclusions_and_category_filter(full: ServeTarget, serving_data) -> None:
    user, history = _user_with_history(full, serving_data)
    first = full.post("/v1/recommend", {"user_id": user, "k": 10}).json()["items"]
    banned = [first[0]["item_id"], first[1]["item_id"]]
    r = full.post("/v1/recommend", {"user_id": user, "k": 10, "exclude": banned, "exclude_history": True})
    got = {i["item_id"] for i in r.json()["items"]}
    assert r.status_code == 200 and not got & set(banned) and not got & set(history)
    category = serving_data.categories[0]
    r = full.post("/v1/recommend", {"user_id": user, "k": 50, "categories": [category]})
    assert r.status_code == 200 and r.json()["items"]
    assert {i["category"] for i in r.json()["items"]} == {category}
    bad = full.post("/v1/recommend", {"user_id": user, "categories": [category, "no-such-category"]})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "categories", 1]
    assert "no-such-category" in bad.json()["detail"][0]["msg"]


# --------------------------------------------------------------------------- bad input: always 4xx naming the field

BAD_RECOMMEND = [
    ({"k": 5}, "body", "user_id or history"),
    ({"user_id": "u", "k": 0}, "k", "greater than or equal"),
    ({"user_id": "u", "k": 51}, "k", "limit of 50"),
    ({"user_id": "u", "k": "ten"}, "k", "integer"),
    ({"user_id": "u", "k": 2.5}, "k", "integer"),
    ({"user_id": ""}, "user_id", "at least 1"),
    ({"user_id": "u", "exlude": ["x"]}, "exlude", "Extra inputs"),
    ({"history": "I00001"}, "history", "list"),
    ({"history": ["I00001"] * 101}, "history", "limit of 100"),
    ({"history": [""]}, "history", "at least 1"),
    ({"user_id": "u", "categories": []}, "categories", "at least 1"),
    ({"user_id": "u", "exclude_history": "maybe"}, "exclude_history", "boolean"),
    ([1, 2, 3], "body", ""),
    (None, "body", ""),
]


@pytest.mark.parametrize(("body", "field", "message"), BAD_RECOMMEND, ids=[str(b[1]) + "-" + str(i) for i, b in enumerate(BAD_RECOMMEND)])
def test_recommend_rejects_bad_input_naming_the_field(full: ServeTarget, body, field: str, message: str) -> None:
    r = full.post("/v1/recommend", body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert any(field in [str(p) for p in d["loc"]] or field == "body" for d in detail), detail
    assert any(message in d["msg"] for d in detail), detail


def test_malformed_json_oversized_body_and_wrong_content_type(full: ServeTarget) -> None:
    r = httpx.post(full.url + "/v1/recommend", content=b'{"user_id": ', headers={**full.headers, "content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][0] == "body"
    big = {"user_id": "u", "exclude": ["x" * 200] * 200}  # ~45 KB > max_body_bytes 16 KiB
    r = full.post("/v1/recommend", big)
    assert r.status_code == 413 and "exceeds the limit of 16384 bytes" in r.json()["detail"][0]["msg"]

    def chunks():
        yield b'{"user_id": "u", "exclude": ['
        for _ in range(400):
            yield b'"' + b"y" * 100 + b'",'
        yield b'"z"]}'

    r = httpx.post(full.url + "/v1/recommend", content=chunks(), headers={**full.headers, "content-type": "application/json"})
    assert r.status_code == 413
    r = httpx.post(full.url + "/v1/recommend", content=b"user_id=u", headers={**full.headers, "content-type": "text/plain"})
    assert r.status_code == 415 and r.json()["detail"][0]["loc"] == ["header", "content-type"]


def test_strict_contracts_name_what_failed(full: ServeTarget, serving_data) -> None:
    json_headers = {**full.headers, "content-type": "application/json"}
    item = serving_data.items[0]
    for route, body, loc in [
        ("/v1/risk", {"orders": [{"lines": [{"item_id": item, "price": False}]}]}, ["body", "orders", 0, "lines", 0, "price"]),
        ("/v1/risk", {"orders": [{"lines": [{"item_id": item, "quantity": True}]}]}, ["body", "orders", 0, "lines", 0, "quantity"]),
        ("/v1/recommend", {"user_id": "u", "k": "10"}, ["body", "k"]),
        ("/v1/demand", {"item_ids": [item], "horizon": True}, ["body", "horizon"]),
    ]:
        r = full.post(route, body)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == loc, (body, r.text)
    r = httpx.post(full.url + "/v1/risk", content=b'{"orders": [{"lines": [{"item_id": "a", "price": NaN}]}]}', headers=json_headers)
    assert r.status_code == 422 and "NaN is not allowed" in r.json()["detail"][0]["msg"], r.text
    r = httpx.post(full.url + "/v1/recommend", content=b'{"user_id": "\xff"}', headers=json_headers)
    assert r.status_code == 400 and "not valid UTF-8" in r.json()["detail"][0]["msg"]
    r = httpx.post(full.url + "/v1/recommend", content=b"[" * 5000 + b"]" * 5000, headers=json_headers)
    assert r.status_code == 400 and "levels deep" in r.json()["detail"][0]["msg"]
    # the default horizon is the served model's (the stand-in's 28), not a fixed 7
    r = full.post("/v1/demand", {"item_ids": [item]})
    assert r.status_code == 200 and r.json()["horizon"] == 28, r.text
    limits = full.get("/v1/limits").json()
    assert limits["max_demand_items"] == 20 and limits["max_k"] == 50
    spec = httpx.get(full.url + "/openapi.json").json()
    assert spec["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert spec["paths"]["/v1/recommend"]["post"]["security"] == [{"apiKey": []}]
    assert {"400", "415"} <= set(spec["paths"]["/v1/recommend"]["post"]["responses"])
    schemas = spec["components"]["schemas"]
    assert schemas["RecommendRequest"]["properties"]["k"]["maximum"] == 50  # enforced, not the hard cap (1000)
    assert schemas["DemandRequest"]["properties"]["item_ids"]["maxItems"] == 20
    assert schemas["Order"]["properties"]["lines"]["maxItems"] == 200
    assert schemas["EventsRequest"]["properties"]["events"]["maxItems"] == 20  # limits.max_events, not 1000
    ready = httpx.get(full.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ok" and ready.json()["detail"] == {}


JUNK = [
    {}, {"user_id": None}, {"user_id": {"$ne": 1}}, {"history": [None]}, {"history": [[1]]}, {"k": 1e308, "user_id": "u"},
    {"k": -1, "user_id": "u"}, {"user_id": "ü" * 300}, {"user_id": "u", "k": 10**30}, {"item_ids": "x"},
    {"item_ids": [1, 2]}, {"item_ids": ["a"], "quantiles": ["NaN"]}, {"item_ids": ["a"], "horizon": 10**9},
    {"orders": [{}]}, {"orders": [{"lines": [{"item_id": "a", "quantity": "many"}]}]},
    {"orders": [{"lines": [{"item_id": "a", "price": "Infinity"}]}]}, "a string", 12, [],
]


@pytest.mark.parametrize("route", ["/v1/recommend", "/v1/demand", "/v1/risk", "/v1/insights"])
def test_nothing_a_caller_sends_is_a_server_error(full: ServeTarget, route: str) -> None:
    for body in JUNK:
        r = full.post(route, body)
        assert 400 <= r.status_code < 500, (route, body, r.status_code, r.text)
    r = httpx.post(full.url + route, content=b'{"k": NaN, "user_id": "u", "quantiles": [NaN]}',
                   headers={**full.headers, "content-type": "application/json"})
    assert 400 <= r.status_code < 500 or r.status_code == 200, r.text


# --------------------------------------------------------------------------- auth and open routes


def test_api_key_required_on_v1_only(full: ServeTarget) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}, {"Authorization": "Basic " + API_KEY}):
        r = httpx.post(full.url + "/v1/recommend", json={"user_id": "u"}, headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", headers
    # an unauthenticated caller learns nothing from validation either
    assert httpx.post(full.url + "/v1/recommend", content=b"garbage").status_code == 401
    assert httpx.get(full.url + "/v1/models").status_code == 401
    for path in ("/healthz", "/docs", "/openapi.json"):
        assert httpx.get(full.url + path).status_code == 200, path
    health = httpx.get(full.url + "/healthz").json()
    assert health["status"] == "ok" and health["tasks"] == ["recommend", "demand", "risk"]
    paths = httpx.get(full.url + "/openapi.json").json()["paths"]
    assert {"/v1/recommend", "/v1/demand", "/v1/risk", "/v1/insights", "/v1/models", "/healthz"} <= set(paths)


# --------------------------------------------------------------------------- demand and risk


def test_demand_forecasts_and_cold_start(full: ServeTarget, serving_data) -> None:
    items = [serving_data.items[0], serving_data.items[9], "NEW-ITEM"]
    r = full.post("/v1/demand", {"item_ids": items, "horizon": 4, "quantiles": [0.9, 0.1, 0.5]})
    assert r.status_code == 200, r.text
    body = r.json()
    DemandResponse.model_validate(body)
    assert body["quantiles"] == [0.1, 0.5, 0.9] and body["horizon"] == 4 and body["freq"] == "1d"
    assert body["model"] == "demand/dem-a" and body["fallback"] is True
    f = {x["item_id"]: x for x in body["forecasts"]}
    assert [f[i]["fallback"] for i in items] == [False, False, True]
    for x in body["forecasts"]:
        assert len(x["values"]) == 3 and all(len(row) == 4 for row in x["values"])
        assert all(a <= b <= c for a, b, c in zip(*x["values"]))
    assert f[serving_data.items[9]]["values"][1][0] == pytest.approx(10.0)  # stand-in: level 1 x (index 9 + 1)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"item_ids": []}, "item_ids"),
        ({"item_ids": ["a"] * 21}, "item_ids"),
        ({"item_ids": ["a"], "horizon": 0}, "horizon"),
        ({"item_ids": ["a"], "horizon": 91}, "horizon"),
        ({"item_ids": ["a"], "horizon": 29}, "horizon"),  # beyond the model's max_horizon (28)
        ({"item_ids": ["a"], "quantiles": [0.5, 1.5]}, "quantiles"),
        ({"item_ids": ["a"], "quantiles": [0.5, 0.5]}, "quantiles"),
        ({"item_ids": ["a"], "quantiles": []}, "quantiles"),
    ],
)
def test_demand_rejects_bad_input(full: ServeTarget, body, field: str) -> None:
    r = full.post("/v1/demand", body)
    assert r.status_code == 422, r.text
    assert field in r.json()["detail"][0]["loc"]


def test_risk_scores_orders(full: ServeTarget, serving_data) -> None:
    item = serving_data.items[0]
    orders = [
        {"order_id": "small", "user_id": "u1", "lines": [{"item_id": item, "quantity": 1, "price": 2.0}]},
        {"order_id": "big", "user_id": "u1", "country": "FR", "ts": "2026-01-02T10:00:00Z",
         "lines": [{"item_id": item, "quantity": 6}, {"item_id": "OTHER", "quantity": 4, "price": 1.5}]},
    ]
    r = full.post("/v1/risk", {"orders": orders})
    assert r.status_code == 200, r.text
    RiskResponse.model_validate(r.json())
    small, big = r.json()["results"]
    assert (small["order_id"], big["order_id"]) == ("small", "big")
    assert small["probability"] == pytest.approx(1 - math.exp(-0.2)) and big["probability"] == pytest.approx(1 - math.exp(-2.0))
    assert (small["flagged"], big["flagged"]) == (False, True) and small["threshold"] == 0.5


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"orders": []}, ["body", "orders"]),
        ({"orders": [{"lines": []}]}, ["body", "orders", 0, "lines"]),
        ({"orders": [{"lines": [{"item_id": "a", "quantity": 0}]}]}, ["body", "orders", 0, "lines", 0, "quantity"]),
        ({"orders": [{"lines": [{"item_id": "a", "price": -1}]}]}, ["body", "orders", 0, "lines", 0, "price"]),
        ({"orders": [{"lines": [{"item_id": "a"}]}] * 6}, ["body", "orders"]),
        ({"orders": [{"lines": [{"item_id": "a"}], "ts": "yesterday"}]}, ["body", "orders", 0, "ts"]),
    ],
)
def test_risk_rejects_bad_input(full: ServeTarget, body, loc) -> None:
    r = full.post("/v1/risk", body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == loc


# --------------------------------------------------------------------------- insights and models


def test_insights_reranks_with_every_signal(full: ServeTarget, serving_data) -> None:
    user, _ = _user_with_history(full, serving_data)
    r = full.post("/v1/insights", {"user_id": user, "k": 5, "demand_weight": 0.5, "risk_weight": 0.4})
    assert r.status_code == 200, r.text
    body = r.json()
    InsightsResponse.model_validate(body)
    assert body["unavailable"] == [] and {s["status"] for s in body["signals"].values()} == {"used"}
    items = body["items"]
    assert len(items) == 5 and [i["score"] for i in items] == sorted((i["score"] for i in items), reverse=True)
    top = max(i["expected_demand"] for i in items)
    for i in items:
        assert i["return_risk"] == pytest.approx(1 - math.exp(-0.2))
        assert i["expected_demand"] > 0 and i["expected_demand"] <= top
        assert i["score"] <= i["recommend_score"]
    bad = full.post("/v1/insights", {"user_id": user, "horizon": 500})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "horizon"]


def test_models_reports_every_arm(full: ServeTarget) -> None:
    r = full.get("/v1/models")
    assert r.status_code == 200, r.text
    tasks = r.json()["tasks"]
    assert set(tasks) == {"recommend", "demand", "risk"} and r.json()["not_configured"] == []
    rec = tasks["recommend"]
    assert rec["champion"]["members"][0]["version"] == "rec-a" and rec["champion"]["members"][0]["ref"] == "production"
    assert "production" in rec["champion"]["members"][0]["stages"]
    challenger = rec["challenger"]
    assert challenger["kind"] == "ensemble" and challenger["deployment"] == "recommend-challenger"
    assert [m["weight"] for m in challenger["members"]] == pytest.approx([1 / 3, 2 / 3])
    assert rec["traffic"]["mode"] == "shadow"
    assert tasks["demand"]["champion"]["model"] == "demand/dem-a"
    assert tasks["risk"]["champion"]["max_batch_size"] == 32  # the Batching default


# --------------------------------------------------------------------------- shadow and logs


def test_shadow_compares_and_logs_both_answers(full: ServeTarget, serving_data) -> None:
    users = [u for u, items in serving_data.users.items() if len(items) >= 2][:6]
    for user in users:
        body = full.post("/v1/recommend", {"user_id": user, "k": 5}).json()
        assert body["variant"] == "champion" and body["model"] == "recommend/rec-a"  # the caller gets the champion
    lines = serve_log_lines("full", "Ingress", "ecomine.shadow task=recommend")
    assert len(lines) >= len(users)
    line = lines[-1]
    assert "champion=recommend/rec-a" in line and "challenger=ensemble(" in line
    assert "champion_answer=I" in line and "challenger_answer=I" in line and "agreement=" in line
    shadow = full.get("/v1/models").json()["tasks"]["recommend"]["shadow"]
    assert shadow["compared"] >= len(users) and 0 <= shadow["mean_agreement"] <= 1
    last = shadow["recent"][-1]
    assert len(last["champion"]["answer"]) == 5 and len(last["challenger"]["answer"]) == 5
    assert last["challenger"]["model"].startswith("ensemble(")


def test_request_logs_hash_the_user_id(full: ServeTarget, serving_data) -> None:
    user = "raw-user-id-7f3a"
    full.post("/v1/recommend", {"user_id": user})
    lines = serve_log_lines("full", "Ingress", "ecomine.request route=/v1/recommend")
    assert lines and all("user=u_" in line for line in lines if "user=" in line)
    everything = serve_log_lines("full", "Ingress", "", timeout_s=0)
    assert not any(user in line for line in everything)


def test_no_secret_reaches_the_serve_logs(full: ServeTarget, lean: ServeTarget) -> None:
    """Every Serve log of the session (controller, proxy, every replica) is free of the keys the apps
    were given; the open app and the salt-less apps said so in one warning line each."""
    from pathlib import Path

    import ray

    r = httpx.post(full.url + "/v1/recommend", json={"user_id": "u"}, headers={"Authorization": f"Bearer {FILE_KEY}"})
    assert r.status_code == 200, r.text  # the key from auth.api_keys_file is accepted
    assert full.post("/v1/recommend", {"user_id": "u"}).status_code == 200  # and the inline hash's key
    logs = Path(ray._private.worker.global_worker.node.get_logs_dir_path()) / "serve"
    files = sorted(p for p in logs.glob("*.log"))
    assert any(p.name.startswith("controller_") for p in files) and any("_full_Ingress_" in p.name for p in files)
    time.sleep(1.0)  # buffered replica logs
    for path in files:
        text = path.read_text(errors="replace")
        for secret in (API_KEY, FILE_KEY):
            assert secret not in text, f"{secret!r} in {path.name}"
    assert serve_log_lines("lean", "Ingress", "ecomine.auth_off", timeout_s=5)
    assert not serve_log_lines("full", "Ingress", "ecomine.auth_off", timeout_s=0)
    assert serve_log_lines("full", "Ingress", "ecomine.user_hash_salt_random", timeout_s=5)
