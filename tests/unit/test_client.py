"""Client SDK behaviour over httpx's pluggable transports (the live-app tests are in integration)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from ecomine.client import (
    AsyncEcomineClient,
    AuthError,
    EcomineClient,
    Retry,
    ServerError,
    TransportError,
    UnavailableError,
    ValidationError,
)
from ecomine.api.schema import RecommendResponse

OK = {"items": [{"item_id": "A", "score": 0.5}], "model": "recommend/v1", "versions": ["v1"], "request_id": "r1"}
FAST = Retry(attempts=3, backoff=0.001, max_backoff=0.002)


def _handler(script: list):
    """Answer requests from a script: a status+body, or an exception to raise."""
    calls = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        step = script[min(len(calls) - 1, len(script) - 1)]
        if isinstance(step, Exception):
            raise step
        status, body = step
        return httpx.Response(status, json=body)

    return handle, calls


def test_recommend_returns_the_server_model_and_sends_the_key() -> None:
    handle, calls = _handler([(200, OK)])
    with EcomineClient(api_key="s3cret", transport=httpx.MockTransport(handle), retry=FAST) as c:
        out = c.recommend(user_id="u1", k=3)
    assert isinstance(out, RecommendResponse) and out.items[0].item_id == "A"
    assert calls[0].headers["authorization"] == "Bearer s3cret"
    assert calls[0].url.path == "/v1/recommend"


def test_422_is_a_typed_error_naming_the_field() -> None:
    body = {"detail": [{"loc": ["body", "k"], "msg": "Input should be less than or equal to 1000", "type": "x"}]}
    handle, calls = _handler([(422, body)])
    with EcomineClient(transport=httpx.MockTransport(handle), retry=FAST) as c, pytest.raises(ValidationError) as e:
        c.recommend(user_id="u1", k=5)
    assert e.value.status == 422 and "body.k" in e.value.message
    assert len(calls) == 1  # 4xx is never retried


def test_401_is_auth_error() -> None:
    handle, _ = _handler([(401, {"detail": "missing or wrong API key"})])
    with EcomineClient(transport=httpx.MockTransport(handle), retry=FAST) as c, pytest.raises(AuthError):
        c.models()


def test_503_and_connection_errors_are_retried() -> None:
    handle, calls = _handler([httpx.ConnectError("refused"), (503, {"detail": "busy"}), (200, OK)])
    with EcomineClient(transport=httpx.MockTransport(handle), retry=FAST) as c:
        assert c.recommend(history=["A", "B"]).model == "recommend/v1"
    assert len(calls) == 3


def test_retry_after_on_503_and_429_is_honoured_and_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    script = [(503, {"detail": "overloaded"}, {"Retry-After": "1"}), (429, {"detail": "slow down"}, {"Retry-After": "7"}),
              (200, OK, {})]

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        status, body, headers = script[len(calls) - 1]
        return httpx.Response(status, json=body, headers=headers)

    # what the client chose to wait, not how long the machine took: the test asserts a decision, no timing
    waits: list[float] = []
    monkeypatch.setattr("ecomine.client.time.sleep", waits.append)
    # backoff alone would wait ~1 ms; the server's Retry-After (1 s and 7 s, capped at 0.5 s here) decides
    retry = Retry(attempts=3, backoff=0.001, max_backoff=0.002, max_retry_after=0.5)
    with EcomineClient(transport=httpx.MockTransport(handle), retry=retry) as c:
        assert c.recommend(history=["A"]).model == "recommend/v1"
    # both capped at 0.5 s (7 s uncapped), plus Retry.delay's up to 10 % jitter; backoff alone would be ~1 ms
    assert len(calls) == 3 and len(waits) == 2 and all(0.5 <= w <= 0.55 for w in waits), waits


def test_retry_delay_reads_the_server_and_caps_it() -> None:
    from ecomine.client import _retry_after

    r = Retry(max_retry_after=10.0)
    assert 3.0 <= r.delay(0, 3.0) <= 3.3 and 10.0 <= r.delay(0, 100.0) <= 11.0
    assert r.delay(0) <= 0.2
    assert _retry_after(httpx.Response(503, headers={"Retry-After": "2"})) == 2.0
    assert _retry_after(httpx.Response(503, headers={"Retry-After": "soon"})) is None
    assert _retry_after(httpx.Response(503)) is None
    dated = _retry_after(httpx.Response(503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}))
    assert dated == 0.0  # a date in the past: retry at once


def test_retries_run_out() -> None:
    handle, calls = _handler([httpx.ConnectError("refused")])
    with EcomineClient(transport=httpx.MockTransport(handle), retry=FAST) as c, pytest.raises(TransportError):
        c.health()
    assert len(calls) == 3
    handle, calls = _handler([(503, {"detail": "no demand model configured"})])
    with EcomineClient(transport=httpx.MockTransport(handle), retry=FAST) as c, pytest.raises(UnavailableError, match="no demand model"):
        c.demand(item_ids=["A"], horizon=7)


def test_bad_request_is_refused_before_sending() -> None:
    handle, calls = _handler([(200, OK)])
    with EcomineClient(transport=httpx.MockTransport(handle), retry=FAST) as c, pytest.raises(Exception, match="user_id or history"):
        c.recommend(k=3)
    assert not calls


def test_demand_chunked_splits_items() -> None:
    body = {"forecasts": [], "quantiles": [0.5], "horizon": 7, "model": "demand/v1", "versions": ["v1"], "freq": "1d"}
    handle, calls = _handler([(200, body)])
    with EcomineClient(transport=httpx.MockTransport(handle), retry=FAST) as c:
        out = c.demand_chunked([f"I{i}" for i in range(1200)], chunk=500, horizon=7)
    import json

    sizes = [len(json.loads(r.read())["item_ids"]) for r in calls]
    assert sizes == [500, 500, 200] and len(out) == 3


def test_async_client_has_the_same_behaviour() -> None:
    handle, calls = _handler([httpx.ConnectError("refused"), (200, OK)])

    async def go():
        async with AsyncEcomineClient(transport=httpx.MockTransport(handle), retry=FAST) as c:
            return await c.recommend(user_id="u1")

    out = asyncio.run(go())
    assert out.items[0].item_id == "A" and len(calls) == 2
    handle, _ = _handler([(422, {"detail": [{"loc": ["body", "k"], "msg": "bad", "type": "x"}]})])

    async def bad():
        async with AsyncEcomineClient(transport=httpx.MockTransport(handle), retry=FAST) as c:
            await c.recommend(user_id="u1")

    with pytest.raises(ValidationError):
        asyncio.run(bad())


def test_public_all_is_complete() -> None:
    import ecomine.client as mod

    public = {n for n in dir(mod) if not n.startswith("_") and getattr(getattr(mod, n), "__module__", "") == mod.__name__}
    assert public <= set(mod.__all__)


def test_demand_chunks_default_to_the_servers_limit() -> None:
    from ecomine.api.schema import DEFAULT_LIMITS

    seen: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/limits":
            return httpx.Response(200, json={**DEFAULT_LIMITS, "max_demand_items": 7})
        import json

        n = len(json.loads(request.content)["item_ids"])
        seen.append(n)
        return httpx.Response(200, json={"quantiles": [0.5], "horizon": 1, "forecasts": [], "model": "m", "versions": []})

    with EcomineClient(transport=httpx.MockTransport(handle), retry=FAST) as c:
        c.demand_chunked([f"I{i}" for i in range(20)])
    assert seen == [7, 7, 6]

    def old_server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/limits":
            return httpx.Response(404, json={"detail": "Not Found"})
        import json

        seen.append(len(json.loads(request.content)["item_ids"]))
        return httpx.Response(200, json={"quantiles": [0.5], "horizon": 1, "forecasts": [], "model": "m", "versions": []})

    seen.clear()
    with EcomineClient(transport=httpx.MockTransport(old_server), retry=FAST) as c:
        c.demand_chunked([f"I{i}" for i in range(450)])
    assert seen == [200, 200, 50] and DEFAULT_LIMITS["max_demand_items"] == 200


def test_events_retried_after_a_503_carry_the_same_event_ids() -> None:
    import json

    handle, calls = _handler([(503, {"detail": "live events unavailable"}), httpx.ConnectError("reset"),
                              (200, {"accepted": 2, "duplicates": 0, "unknown_items": ["nope"]})])
    sent = [{"user_id": "u1", "item_id": "A", "event": "view"},
            {"user_id": "u1", "item_id": "nope", "event": "purchase", "event_id": "mine-1"}]
    with EcomineClient(transport=httpx.MockTransport(handle), retry=FAST) as c:
        got = c.events(events=sent)
    assert (got.accepted, got.unknown_items, got.items_checked) == (2, ["nope"], True)
    bodies = [json.loads(r.content) for r in calls]
    assert all(b == bodies[0] for b in bodies) and len(bodies) == 3
    ids = [e["event_id"] for e in bodies[0]["events"]]
    assert ids[1] == "mine-1" and len(ids[0]) == 32  # the caller's id kept, one drawn for the other

    async def go():
        async with AsyncEcomineClient(transport=httpx.MockTransport(_handler([(200, {"accepted": 1, "duplicates": 0})])[0]),
                                      retry=FAST) as ac:
            return await ac.events(events=sent[:1])

    assert asyncio.run(go()).accepted == 1
    with EcomineClient(transport=httpx.MockTransport(handle), retry=FAST) as c, pytest.raises(Exception, match="event"):
        c.events(events=[{"user_id": "u1", "item_id": "A", "event": "wishlist"}])  # refused before sending


def test_a_proxys_bare_500_is_retried_and_the_apps_json_500_is_not() -> None:
    def bare(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:  # what Serve's proxy answers when the replica dies under the request
            return httpx.Response(500, text="Internal Server Error", headers={"content-type": "text/plain"})
        return httpx.Response(200, json={"accepted": 1, "duplicates": 0})

    calls: list = []
    with EcomineClient(transport=httpx.MockTransport(bare), retry=FAST) as c:
        assert c.events(events=[{"user_id": "u", "item_id": "i", "event": "view"}]).accepted == 1
    assert len(calls) == 2
    handle, app_calls = _handler([(500, {"detail": "internal error (request id r1)", "request_id": "r1"})])
    with EcomineClient(transport=httpx.MockTransport(handle), retry=FAST) as c, pytest.raises(ServerError):
        c.recommend(user_id="u")
    assert len(app_calls) == 1
