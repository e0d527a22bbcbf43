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


JSON = {"content-type": "application/json"}


def client(keys: list[bytes], limit: int = 1024) -> TestClient:
    app = Starlette(routes=[Route("/v1/echo", echo, methods=["POST", "GET"]), Route("/healthz", echo)])
    return TestClient(GuardMiddleware(app, keys=keys, max_body_bytes=limit))


def _d(key: str) -> bytes:
    import hashlib

    return hashlib.sha256(key.encode()).digest()


def test_keys_from_config_env_and_file_are_held_as_digests(tmp_path) -> None:
    from ecomine.serve.security import key_hash

    assert resolve_api_keys([], "K", {}) == []
    assert resolve_api_keys([key_hash("a")], "K", {"K": " b , c ,"}) == [_d("a"), _d("b"), _d("c")]
    assert resolve_api_keys([key_hash("a")], None, {"K": "b"}) == [_d("a")]
    secret = tmp_path / "keys"
    secret.write_text("# rotated 2026-11\nfile-key-1\n\nfile-key-2\n")
    assert resolve_api_keys([], None, {}, file=str(secret)) == [_d("file-key-1"), _d("file-key-2")]
    assert key_hash("a") == "sha256:" + _d("a").hex()


@pytest.mark.parametrize(
    ("header", "ok"),
    [("Bearer k1", True), ("bearer k2", True), ("Bearer  k1 ", True), ("Bearer k3", False), ("k1", False),
     ("Basic k1", False), ("Bearer ", False), (None, False), ("", False)],
)
def test_bearer(header, ok: bool) -> None:
    assert bearer_ok(header, [_d("k1"), _d("k2")]) is ok
    assert bearer_ok(header, []) is True  # no keys configured: open


def test_only_v1_is_protected() -> None:
    c = client([_d("secret")])
    r = c.post("/v1/echo", content=b"x")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer" and "Bearer" in r.json()["detail"]
    assert c.post("/v1/echo", content=b"xy", headers={"Authorization": "Bearer secret", **JSON}).json() == {"bytes": 2}
    assert c.get("/healthz").status_code == 200


def test_body_limit_declared_and_streamed() -> None:
    c = client([], limit=1024)
    assert c.post("/v1/echo", content=b"x" * 1024, headers=JSON).json() == {"bytes": 1024}
    r = c.post("/v1/echo", content=b"x" * 1025, headers=JSON)
    assert r.status_code == 413 and r.json()["detail"][0]["loc"] == ["body"]

    def chunks():
        for _ in range(20):
            yield b"y" * 100

    r = c.post("/v1/echo", content=chunks(), headers=JSON)  # no Content-Length: counted as it arrives
    assert r.status_code == 413 and "more than 1024" in r.json()["detail"][0]["msg"]
    r = c.post("/v1/echo", content=b"x", headers={"content-length": "abc"})
    assert r.status_code == 400


def test_admission_sheds_over_the_limit_before_reading_the_body() -> None:
    import asyncio

    from ecomine.serve.security import AdmissionMiddleware

    release = asyncio.Event()
    entered: list[str] = []
    read_bodies: list[str] = []

    async def app(scope, receive, send) -> None:
        entered.append(scope["path"])
        if scope["path"] == "/v1/slow":
            await release.wait()
        message = await receive()
        read_bodies.append(message.get("body", b"").decode())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    shed: list[str] = []
    guard = AdmissionMiddleware(app, max_in_flight=2, retry_after_s=3, on_shed=shed.append)

    async def call(path: str, method: str = "POST", body: bytes = b"{}") -> tuple[int, dict, bytes]:
        sent: list[dict] = []

        async def receive() -> dict:
            read_bodies.append("<read by the middleware>") if path == "/v1/shed-me" else None
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        await guard({"type": "http", "method": method, "path": path, "headers": []}, receive, send)
        return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]

    async def scenario() -> None:
        slow = [asyncio.create_task(call("/v1/slow")) for _ in range(2)]
        await asyncio.sleep(0.01)
        assert guard.in_flight == 2
        status, headers, body = await call("/v1/shed-me", body=b"not even json")
        assert status == 503 and headers[b"retry-after"] == b"3" and headers[b"content-type"] == b"application/json"
        import json

        detail = json.loads(body)
        assert detail["request_id"] is None and "2 requests in flight" in detail["detail"] and "retry after 3 s" in detail["detail"]
        assert shed == ["/v1/shed-me"] and "/v1/shed-me" not in entered and "<read by the middleware>" not in read_bodies
        # probes, reads and other methods always pass
        assert (await call("/healthz", "GET"))[0] == 200 and (await call("/v1/models", "GET"))[0] == 200
        assert (await call("/readyz", "POST"))[0] == 200
        release.set()
        assert [(await t)[0] for t in slow] == [200, 200]
        assert guard.in_flight == 0 and (await call("/v1/again"))[0] == 200

    asyncio.run(scenario())
    with pytest.raises(ValueError, match="max_in_flight"):
        AdmissionMiddleware(app, max_in_flight=0)


def test_wrong_content_type_is_415_and_bad_bodies_are_400_naming_why() -> None:
    from ecomine.serve.security import json_depth

    c = client([])
    r = c.post("/v1/echo", content=b"user_id=u", headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415 and r.json()["detail"][0]["loc"] == ["header", "content-type"]
    assert "application/json" in r.json()["detail"][0]["msg"]
    r = c.post("/v1/echo", content=b"{}")  # a body and no header: named, not a body error
    assert r.status_code == 415 and r.json()["detail"][0]["msg"] == "no Content-Type header: send 'Content-Type: application/json'"
    assert c.post("/v1/echo").status_code == 200  # no body, no header: the app says what is missing (a 422)
    for ok in ("application/json", "application/json; charset=utf-8", "application/merge-patch+json"):
        assert c.post("/v1/echo", content=b"{}", headers={"content-type": ok}).status_code == 200, ok
    json_headers = {"content-type": "application/json"}
    r = c.post("/v1/echo", content=b'{"user_id": "\xff\xfe"}', headers=json_headers)
    assert r.status_code == 400 and r.json()["detail"][0]["type"] == "invalid_utf8"
    assert "byte 0xff at offset 13" in r.json()["detail"][0]["msg"]
    r = c.post("/v1/echo", content=b"[" * 10_000 + b"]" * 10_000, headers=json_headers)  # 20 KB > 1 KiB
    assert r.status_code == 413 and r.headers["connection"] == "close"  # the rest of the body is not read
    deep = client([], limit=64 * 1024)
    r = deep.post("/v1/echo", content=b"[" * 10_000 + b"]" * 10_000, headers=json_headers)
    assert r.status_code == 400 and "more than 32 levels deep" in r.json()["detail"][0]["msg"]
    # brackets inside strings do not count; escaped quotes do not end a string
    assert json_depth(b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\"[[[[[[[[[["}', 3) == 1
    assert json_depth(b'{"orders": [{"lines": [{"item_id": "a"}]}]}', 32) == 0  # few brackets: not even scanned
    assert json_depth(b"[[[[[]]]]]", 3) == 4
    assert deep.post("/v1/echo", content=b'{"a": [[[1]]]}', headers=json_headers).status_code == 200


def test_slow_uploads_and_unauthenticated_floods_hold_no_admission_slot() -> None:
    """The ingress order, outermost first: guard (key, whole body within body_timeout_s), admission, app.
    With one slot: 20 uploads that never finish and 50 callers without a key leave it to the one
    authorised request; the slow ones get a 408 naming the body, the others a 401."""
    import asyncio

    from ecomine.serve.security import AdmissionMiddleware

    async def app(scope, receive, send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    refused: list[tuple[str, int]] = []
    admission = AdmissionMiddleware(app, max_in_flight=1, hold_s=0.0)
    stack = GuardMiddleware(admission, keys=[_d("k")], max_body_bytes=1024, body_timeout_s=0.2,
                            on_refuse=lambda path, status: refused.append((path, status)))

    async def call(key: str | None, *, stalls: bool = False) -> tuple[int, bytes]:
        sent: list[dict] = []
        headers = [(b"content-type", b"application/json")] + ([(b"authorization", f"Bearer {key}".encode())] if key else [])
        first = [True]

        async def receive() -> dict:
            if stalls and not first[0]:
                await asyncio.sleep(3600)  # the rest of the body never comes
            first[0] = False
            return {"type": "http.request", "body": b"{", "more_body": True} if stalls else \
                {"type": "http.request", "body": b"{}", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        await stack({"type": "http", "method": "POST", "path": "/v1/recommend", "headers": headers}, receive, send)
        return sent[0]["status"], sent[1]["body"]

    async def scenario() -> None:
        slow = [asyncio.create_task(call("k", stalls=True)) for _ in range(20)]
        floods = [asyncio.create_task(call(None)) for _ in range(50)]
        await asyncio.sleep(0.05)
        assert admission.in_flight == 0  # nobody holds the slot while their body is on its way
        assert await call("k") == (200, b"ok")
        assert {(await t)[0] for t in floods} == {401}
        answers = [await t for t in slow]
        assert {status for status, _ in answers} == {408} and b"did not arrive within 0.2 s" in answers[0][1]

    asyncio.run(scenario())
    assert refused.count(("/v1/recommend", 401)) == 50 and refused.count(("/v1/recommend", 408)) == 20
