"""Protection in front of the ingress routes: API key, body size and form, admission (in-flight limit).

Sits inside ``ecomine.serve`` as ASGI middleware around the ingress app, so
every check runs before FastAPI reads or validates anything (an unknown
caller learns nothing about the API from validation errors). Ray-free. The
order, outermost first: the guard (``GuardMiddleware``: key, size, form, the
whole body within ``body_timeout_s``), then admission, then the app - so a
slot is taken only by an authorised request whose body has arrived, and slow
or unauthenticated clients cannot starve authorised ones.

- Admission (``AdmissionMiddleware``): at most ``max_in_flight``
  prediction requests (``POST /v1/*``) inside this replica at once; one more is
  answered before it reaches the app, with a JSON 503 and ``Retry-After``, after
  a short hold (``hold_s``, 50 ms by default). The hold is what keeps goodput
  up against callers that retry at once, ignoring ``Retry-After``: an
  immediate 503 sends such a caller straight back, and on 2 cores thousands of
  refusals a second took the CPU from the admitted requests (the numbers are
  in ``benchmarks/overload_bench.py``'s results); held, each refused caller
  comes back at most ``1 / hold_s`` times a second.

- API key: ``Authorization: Bearer <key>``; its sha256 is compared with
  ``hmac.compare_digest`` against every configured key's (several keys allow
  rotation; only digests are held). Only paths under
  ``/v1`` are protected; ``/healthz``, ``/docs`` and ``/openapi.json`` stay open
  for probes and readers. A missing or wrong key is a 401 with
  ``WWW-Authenticate: Bearer``.
- Body size: a declared ``Content-Length`` above the limit is refused at once;
  a chunked body is counted as it arrives. Either way: 413, nothing parsed, the
  connection closed. A body that does not arrive whole within ``body_timeout_s``: 408.
- Body form (``POST /v1/*``): a ``Content-Type`` other than JSON is a 415; a
  body that is not UTF-8, or that nests arrays/objects deeper than
  ``max_depth``, a 400 whose ``detail`` says which and where, before the JSON
  parser sees it (it would answer a generic 400, or recurse 10,000 levels).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

__all__ = ["resolve_api_keys", "key_hash", "bearer_ok", "json_depth", "body_problem", "GuardMiddleware", "AdmissionMiddleware",
           "OVERLOADED", "MAX_JSON_DEPTH"]

MAX_JSON_DEPTH = 32  # the deepest request the API defines (risk: orders -> lines -> line) is 4
_JSON_STRUCTURE = re.compile(rb'[\[\]{}"\\]')

OVERLOADED = "overloaded: {n} requests in flight, this replica's limit (ingress.max_in_flight); retry after {s} s"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def resolve_api_keys(
    keys: Iterable[str] = (), env_name: str | None = None, environ: MutableMapping[str, str] | None = None,
    file: str | None = None,
) -> list[bytes]:
    """The sha256 digest of every accepted key: ``keys`` (``sha256:<hex>`` hashes, or plain keys),
    a comma-separated list in ``$env_name``, and one key per line of ``file``. Only digests are
    kept in memory. No keys means no authentication. A missing ``file`` is an OSError."""
    env = os.environ if environ is None else environ
    plain: list[str] = []
    digests: list[bytes] = []
    for k in keys:
        if k.startswith("sha256:"):
            digests.append(bytes.fromhex(k[len("sha256:"):]))
        elif k:
            plain.append(k)
    if env_name and env.get(env_name):
        plain.extend(part.strip() for part in env[env_name].split(",") if part.strip())
    if file:
        with open(file, encoding="utf-8") as f:
            plain.extend(line.strip() for line in f if line.strip() and not line.startswith("#"))
    return digests + [hashlib.sha256(k.encode()).digest() for k in plain]


def key_hash(key: str) -> str:
    """What ``auth.api_keys`` takes for ``key``: ``sha256:<64 hex>``."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def bearer_ok(header: str | None, keys: list[bytes]) -> bool:
    """True when ``header`` is ``Bearer <key>`` whose sha256 is one of ``keys``; compared in constant time."""
    if not keys:
        return True
    if not header:
        return False
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    given = hashlib.sha256(token.strip().encode()).digest()
    ok = False
    for key in keys:  # no early exit: timing does not tell which key (or whether any) matched
        ok |= hmac.compare_digest(given, key)
    return ok


def json_depth(body: bytes, limit: int) -> int:
    """How deep arrays/objects nest in ``body`` (strings skipped), counting only up to ``limit + 1``."""
    if body.count(b"[") + body.count(b"{") <= limit:  # the common case, at C speed
        return 0
    depth = deepest = 0
    in_string, skip = False, -1
    for m in _JSON_STRUCTURE.finditer(body):
        i = m.start()
        if i == skip:
            continue
        c = body[i]
        if in_string:
            if c == 0x5C:  # backslash: the next byte is escaped
                skip = i + 1
            elif c == 0x22:
                in_string = False
        elif c == 0x22:
            in_string = True
        elif c in (0x5B, 0x7B):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif c in (0x5D, 0x7D):
            depth -= 1
    return deepest


def body_problem(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any] | None:
    """The 400 ``detail`` entry for a JSON body that is not UTF-8 or nests too deep; None when fine."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return {"loc": ["body"], "msg": f"the body is not valid UTF-8: byte 0x{body[exc.start]:02x} at offset "
                f"{exc.start} ({exc.reason})", "type": "invalid_utf8"}
    if json_depth(body, max_depth) > max_depth:
        return {"loc": ["body"], "msg": f"the body nests arrays/objects more than {max_depth} levels deep",
                "type": "too_deep"}
    return None


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False  # no header with a body: a 415 that names it, not a body error that does not
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


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


# on a 413: the server closes the connection instead of reading the rest of the body it refused
_CLOSE = [(b"connection", b"close")]


class GuardMiddleware:
    """ASGI middleware: API key on ``/v1/*``, then the body-size limit, then the app."""

    def __init__(self, app: ASGIApp, *, keys: list[bytes], max_body_bytes: int, protected_prefix: str = "/v1",
                 max_depth: int = MAX_JSON_DEPTH, body_timeout_s: float | None = None,
                 on_refuse: Callable[[str, int], None] | None = None) -> None:
        self.app = app
        self.keys = keys
        self.max_body_bytes = max_body_bytes
        self.protected_prefix = protected_prefix
        self.max_depth = max_depth
        self.body_timeout_s = body_timeout_s
        self.on_refuse = on_refuse

    async def _refuse(self, send: Send, path: str, status: int, body: dict[str, Any],
                      headers: list[tuple[bytes, bytes]] = ()) -> None:
        await _send_json(send, status, body, headers)
        if self.on_refuse is not None:
            self.on_refuse(path, status)

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
        protected = path == self.protected_prefix or path.startswith(self.protected_prefix + "/")
        if self.keys and protected:
            if not bearer_ok(headers.get("authorization"), self.keys):
                await self._refuse(
                    send, path, 401, {"detail": "missing or invalid API key: send 'Authorization: Bearer <key>'"},
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
                await self._refuse(send, path, 400, {"detail": f"Content-Length header {declared!r} is not a byte count"})
                return
            if size > self.max_body_bytes:
                await self._refuse(send, path, 413, self._too_large(size), _CLOSE)
                return
        if scope.get("method", "GET") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        checked = protected and scope.get("method") == "POST"
        has_body = "transfer-encoding" in headers or headers.get("content-length", "0") != "0"
        if checked and not _is_json(headers.get("content-type")) and (has_body or "content-type" in headers):
            await self._refuse(send, path, 415, {"detail": [{
                "loc": ["header", "content-type"], "type": "unsupported_media_type",
                "msg": (f"Content-Type {headers['content-type']!r} is not JSON" if "content-type" in headers
                        else "no Content-Type header") + ": send 'Content-Type: application/json'",
            }]})
            return
        # Read the whole (bounded) body first, within the deadline, then replay it to the app.
        chunks: list[bytes] = []
        read = [0]
        try:
            # asyncio.timeout, not wait_for: no task per receive() on the request path
            async with asyncio.timeout(self.body_timeout_s):
                ended = await self._read(receive, send, path, chunks, read)
        except TimeoutError:
            await self._refuse(send, path, 408, {"detail": [{
                "loc": ["body"], "type": "body_timeout",
                "msg": f"the request body did not arrive within {self.body_timeout_s:g} s ({read[0]} bytes read)",
            }]}, _CLOSE)
            return
        if not ended:
            return
        whole = b"".join(chunks)
        if checked and (problem := body_problem(whole, self.max_depth)) is not None:
            await self._refuse(send, path, 400, {"detail": [problem]})
            return
        replay = [{"type": "http.request", "body": whole, "more_body": False}]

        async def replay_receive() -> Message:
            if replay:
                return replay.pop()
            return await receive()

        await self.app(scope, replay_receive, send)

    async def _read(self, receive: Receive, send: Send, path: str, chunks: list[bytes], read: list[int]) -> bool:
        """The body's chunks into ``chunks`` (``read[0]``: bytes so far); False when it was refused (413)
        or the client went away, which is then answered."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return False
            body = message.get("body", b"")
            read[0] += len(body)
            if read[0] > self.max_body_bytes:
                await self._refuse(send, path, 413, self._too_large(read[0], at_least=True), _CLOSE)
                return False
            chunks.append(body)
            if not message.get("more_body", False):
                return True

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


class AdmissionMiddleware:
    """ASGI middleware: at most ``max_in_flight`` ``POST`` requests under ``/v1`` at once (the rest: 503).

    A refused request gets ``{"detail": ..., "request_id": null}`` (``ErrorResponse``) with
    ``Retry-After: retry_after_s`` after ``hold_s`` seconds (0: at once); it reaches no model and no log line. ``on_shed(path)`` is called for
    each refusal (metrics). Other methods and paths (probes, ``/v1/models``, docs) always pass.
    """

    def __init__(
        self, app: ASGIApp, *, max_in_flight: int, retry_after_s: int = 1, hold_s: float = 0.05,
        protected_prefix: str = "/v1", on_shed: Callable[[str], None] | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.app = app
        self.hold_s = hold_s
        self.max_in_flight = max_in_flight
        self.retry_after_s = retry_after_s
        self.protected_prefix = protected_prefix
        self.on_shed = on_shed
        self.in_flight = 0  # one event loop per replica: a plain counter, no lock
        self._body = json.dumps(
            {"detail": OVERLOADED.format(n=max_in_flight, s=retry_after_s), "request_id": None}
        ).encode()
        self._headers = [
            (b"content-type", b"application/json"), (b"content-length", str(len(self._body)).encode()),
            (b"retry-after", str(retry_after_s).encode()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        root = scope.get("root_path", "") or ""
        if root and path.startswith(root):
            path = path[len(root):]
        if not path.startswith(self.protected_prefix + "/"):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            if self.hold_s > 0:  # not counted in flight: a held refusal costs a timer, no model time
                await asyncio.sleep(self.hold_s)
            await send({"type": "http.response.start", "status": 503, "headers": self._headers})
            await send({"type": "http.response.body", "body": self._body})
            if self.on_shed is not None:
                self.on_shed(path)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
