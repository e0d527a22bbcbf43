"""The Python SDK for a served ecomine app: `EcomineClient` and `AsyncEcomineClient`.

The last step of the flow (serve -> client). It imports nothing from Ray or
torch: only httpx and the request/response models the server itself uses
(`ecomine.api.schema`), so a caller gets the same pydantic types back.
Every prediction takes ``explain=True`` (``client.recommend(user_id="u1", explain=True)``):
the answer then carries typed explanations - ``ScoredItem.because`` (history items and
their contributions), ``ItemForecast.drivers`` (what moved the p50), ``OrderRisk.lines``
(features and words per order line); a model that cannot explain is a ``ValidationError``
naming ``explain``.

Exceptions (one tree, httpx style)::

    EcomineError
    ├── TransportError        the server could not be reached (after retries)
    └── APIError              the server answered with an error status
        ├── ValidationError   4xx: the request was refused (422 names the field)
        ├── AuthError         401/403: missing or wrong API key
        ├── NotFoundError     404
        ├── UnavailableError  503: no model configured / overloaded (after retries)
        └── ServerError       other 5xx

Every call is idempotent - predictions only read, and ``events`` sends each event with an
``event_id`` (the client draws a uuid4 for each that has none), so a retried batch is stored
once: connection errors, timeouts, 503s, 429s and a proxy's bare 500 (a replica that died
under the request; the app's own errors are JSON and final) are retried with exponential backoff (`Retry`); a
503/429 with `Retry-After` (what an overloaded ingress sends) waits what the
server asks instead, at most `Retry.max_retry_after` seconds.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel

from ecomine.api.events import Event, EventsRequest, EventsResponse
from ecomine.api.schema import (
    API_PREFIX,
    DEFAULT_LIMITS,
    DemandRequest,
    DemandResponse,
    InsightsRequest,
    InsightsResponse,
    LimitsResponse,
    RecommendRequest,
    RecommendResponse,
    RiskRequest,
    RiskResponse,
)
from ecomine.api.status import HealthResponse, ModelsResponse

__all__ = [
    "EcomineClient",
    "AsyncEcomineClient",
    "Retry",
    "EcomineError",
    "TransportError",
    "APIError",
    "ValidationError",
    "AuthError",
    "NotFoundError",
    "UnavailableError",
    "ServerError",
]

class EcomineError(Exception):
    """Base of every error the SDK raises."""


class TransportError(EcomineError):
    """The server could not be reached (connection refused/reset, timeout), after retries."""


class APIError(EcomineError):
    """The server answered with an error status; `message` is the server's own."""

    def __init__(self, status: int, message: str, *, detail: Any = None, request_id: str | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message, self.detail, self.request_id = status, message, detail, request_id


class ValidationError(APIError):
    """4xx: the request was refused; for 422 `detail` lists the fields."""


class AuthError(APIError):
    """401/403."""


class NotFoundError(APIError):
    """404."""


class UnavailableError(APIError):
    """503 after retries."""


class ServerError(APIError):
    """Other 5xx."""


@dataclass(frozen=True)
class Retry:
    """Retries for idempotent calls: attempts in all, backoff base and cap, and the longest
    ``Retry-After`` honoured (seconds; a server asking for more waits this long).

    Written here, not with tenacity / urllib3's Retry: one policy must serve the blocking and
    the asyncio client and read the server's ``Retry-After`` and error body per answer, in
    ~20 lines, without a dependency the SDK's users would then carry."""

    attempts: int = 4
    backoff: float = 0.2
    max_backoff: float = 5.0
    max_retry_after: float = 10.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds before attempt ``attempt + 1``: the server's ``Retry-After`` (capped, with up to
        10 % jitter so refused callers do not return in step), else jittered exponential backoff."""
        if retry_after is not None:
            return min(self.max_retry_after, retry_after) * (1.0 + random.random() / 10)
        return min(self.max_backoff, self.backoff * 2**attempt) * (0.5 + random.random() / 2)


def _retry_after(resp: httpx.Response) -> float | None:
    """A response's ``Retry-After`` in seconds (delay-seconds or an HTTP date), None when absent or unreadable."""
    value = resp.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class _Call:
    """One API call, independent of sync/async: method, path, body and response type."""

    method: str
    path: str
    body: BaseModel | None
    response: type[BaseModel]


def _error(resp: httpx.Response) -> APIError:
    try:
        payload = resp.json()
    except ValueError:
        payload = {"detail": resp.text or resp.reason_phrase}
    detail = payload.get("detail") if isinstance(payload, dict) else payload
    if isinstance(detail, list):
        message = "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg', '')}" if isinstance(d, dict) else str(d)
            for d in detail
        )
    else:
        message = str(detail)
    rid = payload.get("request_id") if isinstance(payload, dict) else None
    s = resp.status_code
    cls = (
        AuthError if s in (401, 403) else NotFoundError if s == 404 else UnavailableError if s == 503
        else ValidationError if 400 <= s < 500 else ServerError
    )
    return cls(s, message, detail=detail, request_id=rid)


def _request_kwargs(call: _Call) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if call.body is not None:
        kw["json"] = call.body.model_dump(mode="json", exclude_none=True)
    return kw


def _parse(call: _Call, resp: httpx.Response) -> BaseModel:
    if resp.status_code >= 400:
        raise _error(resp)
    return call.response.model_validate(resp.json())


_RETRYABLE = (httpx.TransportError,)
_RETRY_STATUS = (429, 503)


def _settle(call: _Call, outcome: httpx.Response | Exception, attempt: int, retry: Retry) -> tuple[bool, Any]:
    """The retry policy both clients share: ``(True, parsed answer)``, or ``(False, seconds to wait)``
    before the next attempt; raises when out of attempts.

    Connection errors, 503, 429 and a proxy's bare 500 are retried (after the server's ``Retry-After``
    when it sends one); any other answer is final.
    """
    last = attempt == retry.attempts - 1
    if isinstance(outcome, Exception):
        if last:
            raise TransportError(f"{call.method} {call.path}: {type(outcome).__name__}: {outcome}") from None
        return False, retry.delay(attempt)
    if not (outcome.status_code in _RETRY_STATUS or _proxy_error(outcome)) or last:
        return True, _parse(call, outcome)
    return False, retry.delay(attempt, _retry_after(outcome))


def _proxy_error(resp: httpx.Response) -> bool:
    """A 500 that is not the app's (the app answers every error as JSON): Serve's proxy saying the replica
    died under the request - it never finished, and every call is idempotent, so it is retried."""
    return resp.status_code == 500 and "application/json" not in resp.headers.get("content-type", "")


def _chunks(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


class _Calls:
    """The API surface as `_Call`s; both clients execute them."""

    @staticmethod
    def recommend(request: RecommendRequest | None = None, **fields: Any) -> _Call:
        body = request or RecommendRequest(**fields)
        return _Call("POST", f"{API_PREFIX}/recommend", body, RecommendResponse)

    @staticmethod
    def demand(request: DemandRequest | None = None, **fields: Any) -> _Call:
        return _Call("POST", f"{API_PREFIX}/demand", request or DemandRequest(**fields), DemandResponse)

    @staticmethod
    def risk(request: RiskRequest | None = None, **fields: Any) -> _Call:
        return _Call("POST", f"{API_PREFIX}/risk", request or RiskRequest(**fields), RiskResponse)

    @staticmethod
    def insights(request: InsightsRequest | None = None, **fields: Any) -> _Call:
        return _Call("POST", f"{API_PREFIX}/insights", request or InsightsRequest(**fields), InsightsResponse)

    @staticmethod
    def events(request: EventsRequest | None = None, events: Sequence[Event | dict[str, Any]] | None = None) -> _Call:
        body = request or EventsRequest(events=list(events or []))
        # an event_id per event, drawn once here, makes the retries below store each event once
        body = body.model_copy(update={"events": [
            e if e.event_id is not None else e.model_copy(update={"event_id": uuid.uuid4().hex}) for e in body.events]})
        return _Call("POST", f"{API_PREFIX}/events", body, EventsResponse)

    @staticmethod
    def models() -> _Call:
        return _Call("GET", f"{API_PREFIX}/models", None, ModelsResponse)

    @staticmethod
    def limits() -> _Call:
        return _Call("GET", f"{API_PREFIX}/limits", None, LimitsResponse)

    @staticmethod
    def health() -> _Call:
        return _Call("GET", "/healthz", None, HealthResponse)


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class _Client:
    """What both clients hold: the retry policy, the server's limits once fetched, one httpx client
    (`_HTTP`: blocking or asyncio; `transport` of the matching kind, e.g. `httpx.MockTransport`)."""

    _HTTP: type[httpx.Client] | type[httpx.AsyncClient]

    def __init__(
        self,
        *,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        timeout: float | httpx.Timeout = 10.0,
        retry: Retry = Retry(),
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.retry = retry
        self._limits: LimitsResponse | None = None
        self._http = self._HTTP(base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport)


class EcomineClient(_Client):
    """Blocking client. `EcomineClient(base_url="http://127.0.0.1:8000", api_key=...)`.

    Methods take either a request model or its fields as keyword arguments:
    `client.recommend(user_id="17850", k=10)`.
    """

    _HTTP = httpx.Client

    def _run(self, call: _Call) -> Any:
        for attempt in range(self.retry.attempts):
            try:
                resp = self._http.request(call.method, call.path, **_request_kwargs(call))
            except _RETRYABLE as e:
                resp = e
            done, value = _settle(call, resp, attempt, self.retry)
            if done:
                return value
            time.sleep(value)
        raise AssertionError("unreachable")

    def recommend(self, request: RecommendRequest | None = None, **fields: Any) -> RecommendResponse:
        return self._run(_Calls.recommend(request, **fields))

    def demand(self, request: DemandRequest | None = None, **fields: Any) -> DemandResponse:
        return self._run(_Calls.demand(request, **fields))

    def risk(self, request: RiskRequest | None = None, **fields: Any) -> RiskResponse:
        return self._run(_Calls.risk(request, **fields))

    def insights(self, request: InsightsRequest | None = None, **fields: Any) -> InsightsResponse:
        return self._run(_Calls.insights(request, **fields))

    def events(self, request: EventsRequest | None = None, *,
               events: Sequence[Event | dict[str, Any]] | None = None) -> EventsResponse:
        """Send user events (``POST /v1/events``): ``client.events(events=[{"user_id": "u1", "item_id": "i9",
        "event": "purchase"}])``. The answer counts the accepted and duplicate events."""
        return self._run(_Calls.events(request, events))

    def models(self) -> ModelsResponse:
        return self._run(_Calls.models())

    def limits(self) -> LimitsResponse:
        """The server's per-request limits (``GET /v1/limits``); fetched once, then remembered."""
        if self._limits is None:
            self._limits = self._run(_Calls.limits())
        return self._limits

    def health(self) -> HealthResponse:
        return self._run(_Calls.health())

    def recommend_many(self, user_ids: Sequence[str], **fields: Any) -> list[RecommendResponse]:
        """One recommend call per user (the API takes one user per request)."""
        return [self.recommend(user_id=u, **fields) for u in user_ids]

    def demand_chunked(self, item_ids: Sequence[str], *, chunk: int | None = None, **fields: Any) -> list[DemandResponse]:
        """Split a large item list into calls of at most `chunk` items (default: the server's
        `max_demand_items`, from `GET /v1/limits`; a server without that route: the shipped default)."""
        if chunk is None:
            try:
                chunk = self.limits().max_demand_items
            except NotFoundError:
                chunk = DEFAULT_LIMITS["max_demand_items"]
        return [self.demand(item_ids=list(c), **fields) for c in _chunks(item_ids, chunk)]

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> EcomineClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncEcomineClient(_Client):
    """The same API for asyncio: `await client.recommend(user_id=..., k=10)`."""

    _HTTP = httpx.AsyncClient

    async def _run(self, call: _Call) -> Any:
        for attempt in range(self.retry.attempts):
            try:
                resp = await self._http.request(call.method, call.path, **_request_kwargs(call))
            except _RETRYABLE as e:
                resp = e
            done, value = _settle(call, resp, attempt, self.retry)
            if done:
                return value
            await asyncio.sleep(value)
        raise AssertionError("unreachable")

    async def recommend(self, request: RecommendRequest | None = None, **fields: Any) -> RecommendResponse:
        return await self._run(_Calls.recommend(request, **fields))

    async def demand(self, request: DemandRequest | None = None, **fields: Any) -> DemandResponse:
        return await self._run(_Calls.demand(request, **fields))

    async def risk(self, request: RiskRequest | None = None, **fields: Any) -> RiskResponse:
        return await self._run(_Calls.risk(request, **fields))

    async def insights(self, request: InsightsRequest | None = None, **fields: Any) -> InsightsResponse:
        return await self._run(_Calls.insights(request, **fields))

    async def events(self, request: EventsRequest | None = None, *,
                     events: Sequence[Event | dict[str, Any]] | None = None) -> EventsResponse:
        """As ``EcomineClient.events``."""
        return await self._run(_Calls.events(request, events))

    async def models(self) -> ModelsResponse:
        return await self._run(_Calls.models())

    async def limits(self) -> LimitsResponse:
        """The server's per-request limits (``GET /v1/limits``); fetched once, then remembered."""
        if self._limits is None:
            self._limits = await self._run(_Calls.limits())
        return self._limits

    async def health(self) -> HealthResponse:
        return await self._run(_Calls.health())

    async def recommend_many(self, user_ids: Sequence[str], *, concurrency: int = 8, **fields: Any) -> list[RecommendResponse]:
        """Concurrent recommend calls, at most `concurrency` in flight."""
        sem = asyncio.Semaphore(concurrency)

        async def one(u: str) -> RecommendResponse:
            async with sem:
                return await self.recommend(user_id=u, **fields)

        return list(await asyncio.gather(*(one(u) for u in user_ids)))

    async def demand_chunked(self, item_ids: Sequence[str], *, chunk: int | None = None, **fields: Any) -> list[DemandResponse]:
        """As `EcomineClient.demand_chunked`: chunks of the server's `max_demand_items` by default."""
        if chunk is None:
            try:
                chunk = (await self.limits()).max_demand_items
            except NotFoundError:
                chunk = DEFAULT_LIMITS["max_demand_items"]
        return [await self.demand(item_ids=list(c), **fields) for c in _chunks(item_ids, chunk)]

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncEcomineClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
