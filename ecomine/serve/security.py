"""Protection in front of the ingress routes: API key and request body size.

Sits inside ``ecomine.serve`` as one ASGI middleware around the ingress app,
so both checks run before FastAPI reads or validates anything (an unknown
caller learns nothing about the API from validation errors). Ray-free.

- API key: ``Authorization: Bearer <key>``, compared with ``hmac.compare_digest``
  against every configured key (several keys allow rotation). Only paths under
  ``/v1`` are protected; ``/healthz``, ``/docs`` and ``/openapi.json`` stay open
  for probes and readers. A missing or wrong key is a 401 with
  ``WWW-Authenticate: Bearer``.
- Body size: a declared ``Content-Length`` above the limit is refused at once;
  a chunked body is counted as it arrives. Either way: 413, nothing parsed.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

__all__ = ["resolve_api_keys", "bearer_ok", "GuardMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def resolve_api_keys(
    keys: Iterable[str] = (), env_name: str | None = None, environ: MutableMapping[str, str] | None = None
) -> list[bytes]:
    """Every accepted key: those given plus a comma-separated list in ``$env_name``, if set.

    No keys means no authentication.
    """
    env = os.environ if environ is None else environ
    found = [k for k in keys if k]
    if env_name and env.get(env_name):
        found.extend(part.strip() for part in env[env_name].split(",") if part.strip())
    return [k.encode() for k in found]


def bearer_ok(header: str | None, keys: list[bytes]) -> bool:
    """True when ``header`` is ``Bearer <one of keys>``; every key is compared in constant time."""
    if not keys:
        return True
    if not header:
        return False
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    given = token.strip().encode()
    ok = False
    for key in keys:  # no early exit: timing does not tell which key (or whether any) matched
        ok |= hmac.compare_digest(given, key)
    return ok


async def _send_json(send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] = ()) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class GuardMiddleware:
    """ASGI middleware: API key on ``/v1/*``, then the body-size limit, then the app."""

    def __init__(self, app: ASGIApp, *, keys: list[bytes], max_body_bytes: int, protected_prefix: str = "/v1") -> None:
        self.app = app
        self.keys = keys
        self.max_body_bytes = max_body_bytes
        self.protected_prefix = protected_prefix

    def _relative_path(self, scope: Scope) -> str:
        path = scope.get("path", "")
        root = scope.get("root_path", "") or ""
        if root and path.startswith(root):
            path = path[len(root) :]
        return path or "/"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path = self._relative_path(scope)
        if self.keys and (path == self.protected_prefix or path.startswith(self.protected_prefix + "/")):
            if not bearer_ok(headers.get("authorization"), self.keys):
                await _send_json(
                    send, 401, {"detail": "missing or invalid API key: send 'Authorization: Bearer <key>'"},
                    [(b"www-authenticate", b"Bearer")],
                )
                return
        declared = headers.get("content-length")
        if declared is not None:
            try:
                size = int(declared)
                if size < 0:
                    raise ValueError
            except ValueError:
                await _send_json(send, 400, {"detail": f"Content-Length header {declared!r} is not a byte count"})
                return
            if size > self.max_body_bytes:
                await _send_json(send, 413, self._too_large(size))
                return
        if scope.get("method", "GET") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        # Read the whole (bounded) body first, then replay it to the app.
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            total += len(body)
            if total > self.max_body_bytes:
                await _send_json(send, 413, self._too_large(total, at_least=True))
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay_receive() -> Message:
            if replay:
                return replay.pop()
            return await receive()

        await self.app(scope, replay_receive, send)

    def _too_large(self, size: int, at_least: bool = False) -> dict[str, Any]:
        what = f"more than {self.max_body_bytes}" if at_least else str(size)
        return {
            "detail": [
                {
                    "loc": ["body"],
                    "msg": f"request body of {what} bytes exceeds the limit of {self.max_body_bytes} bytes",
                    "type": "body_too_large",
                }
            ]
        }
