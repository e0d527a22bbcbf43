"""API keys (constant-time Bearer check) and the body-size limit, on a tiny ASGI app."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from ecomine.serve.security import GuardMiddleware, bearer_ok, resolve_api_keys


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"bytes": len(body)})


def client(keys: list[bytes], limit: int = 1024) -> TestClient:
    app = Starlette(routes=[Route("/v1/echo", echo, methods=["POST", "GET"]), Route("/healthz", echo)])
    return TestClient(GuardMiddleware(app, keys=keys, max_body_bytes=limit))


def test_keys_from_config_and_env() -> None:
    assert resolve_api_keys([], "K", {}) == []
    assert resolve_api_keys(["a"], "K", {"K": " b , c ,"}) == [b"a", b"b", b"c"]
    assert resolve_api_keys(["a"], None, {"K": "b"}) == [b"a"]


@pytest.mark.parametrize(
    ("header", "ok"),
    [("Bearer k1", True), ("bearer k2", True), ("Bearer  k1 ", True), ("Bearer k3", False), ("k1", False),
     ("Basic k1", False), ("Bearer ", False), (None, False), ("", False)],
)
def test_bearer(header, ok: bool) -> None:
    assert bearer_ok(header, [b"k1", b"k2"]) is ok
    assert bearer_ok(header, []) is True  # no keys configured: open


def test_only_v1_is_protected() -> None:
    c = client([b"secret"])
    r = c.post("/v1/echo", content=b"x")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer" and "Bearer" in r.json()["detail"]
    assert c.post("/v1/echo", content=b"xy", headers={"Authorization": "Bearer secret"}).json() == {"bytes": 2}
    assert c.get("/healthz").status_code == 200


def test_body_limit_declared_and_streamed() -> None:
    c = client([], limit=1024)
    assert c.post("/v1/echo", content=b"x" * 1024).json() == {"bytes": 1024}
    r = c.post("/v1/echo", content=b"x" * 1025)
    assert r.status_code == 413 and r.json()["detail"][0]["loc"] == ["body"]

    def chunks():
        for _ in range(20):
            yield b"y" * 100

    r = c.post("/v1/echo", content=chunks())  # no Content-Length: counted as it arrives
    assert r.status_code == 413 and "more than 1024" in r.json()["detail"][0]["msg"]
    r = c.post("/v1/echo", content=b"x", headers={"content-length": "abc"})
    assert r.status_code == 400
