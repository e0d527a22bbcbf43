"""The HTTP face of the ingress: the FastAPI app, its routes, error handlers and middleware.

Sits in ``ecomine.serve`` under ``serve.ingress``: the Ingress deployment's
``__serve_build_asgi_app__`` calls ``build_http_app(self)`` in the replica (never at import). Each
route validates its body (``ecomine.api``) and hands it to the ingress method of the same name;
this module owns only what HTTP adds: status codes, the OpenAPI document, and the middleware
order (guard, then admission, then observation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

import ecomine
from ecomine.api.events import EventsRequest, EventsResponse
from ecomine.api.schema import (
    API_PREFIX,
    DemandRequest,
    DemandResponse,
    ErrorResponse,
    InsightsRequest,
    InsightsResponse,
    LimitsResponse,
    RecommendRequest,
    RecommendResponse,
    RiskRequest,
    RiskResponse,
)
from ecomine.api.status import DriftResponse, HealthResponse, ModelsResponse
from ecomine.serve.observability import ObserveMiddleware, log_event
from ecomine.serve.openapi_doc import deployment_openapi
from ecomine.serve.router import HTTPError, short
from ecomine.serve.security import AdmissionMiddleware, GuardMiddleware

if TYPE_CHECKING:
    from ecomine.serve.ingress import Ingress

__all__ = ["build_http_app", "RECOMMEND_FIELDS"]

RECOMMEND_FIELDS = tuple(RecommendResponse.model_fields)


def build_http_app(ingress: "Ingress") -> FastAPI:
    """The FastAPI app of one ingress replica (its routes call ``ingress``'s methods).

    ~120 lines: each route is a closure over this replica's ingress and limits,
    declared where FastAPI reads its signature; split, they would only pass that state around."""
    app = FastAPI(
        title="ecomine",
        version=ecomine.__version__,
        description="Recommendations, demand forecasts and order risk from registered ecomine models. "
        "Every /v1 route takes and returns JSON; bad input is a 422 whose detail names the field.",
        docs_url="/docs",
        redoc_url=None,
    )
    errors = {
        400: {"model": ErrorResponse, "description": "the body is not UTF-8, or nests deeper than 32 levels "
              "(detail says which); or a Content-Length that is no byte count"},
        401: {"model": ErrorResponse, "description": "missing or invalid API key"},
        415: {"model": ErrorResponse, "description": "a Content-Type other than application/json"},
        413: {"model": ErrorResponse, "description": "request body too large"},
        503: {"model": ErrorResponse, "description": "task not configured, model unavailable, or overloaded "
              "(ingress.max_in_flight requests in flight: Retry-After says when to try again)"},
        504: {"model": ErrorResponse, "description": "the model did not answer in time"},
    }

    @app.exception_handler(HTTPError)
    async def _http_error(request: Request, exc: HTTPError) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.detail, "request_id": request.state.request_id}, status_code=exc.status,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid_input(request: Request, exc: RequestValidationError) -> JSONResponse:
        # loc + msg + type only: echoing the input back could leak it and may not be JSON (NaN)
        detail = [
            {"loc": [p if isinstance(p, (str, int)) else str(p) for p in e.get("loc", ())],
             "msg": str(e.get("msg", "")), "type": str(e.get("type", "value_error"))}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": detail, "request_id": getattr(request.state, "request_id", None)},
                            status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        rid = getattr(request.state, "request_id", None)
        log_event("error", request_id=rid, error=f"{type(exc).__name__}: {short(exc)}")
        return JSONResponse({"detail": f"internal error (request id {rid})", "request_id": rid}, status_code=500)

    @app.post(f"{API_PREFIX}/recommend", response_model=RecommendResponse, responses=errors, tags=["recommend"])
    async def recommend(req: RecommendRequest, request: Request) -> JSONResponse:
        """Top-k next items for a user (stored history) or an explicit history; popular items when unknown."""
        # the hot path: the answer is built field by field to match RecommendResponse (tests check
        # it against the model), so it goes out without a second validation pass
        answer = await ingress.recommend(req, request)
        return JSONResponse({k: answer[k] for k in RECOMMEND_FIELDS})

    @app.post(f"{API_PREFIX}/demand", response_model=DemandResponse, responses=errors, tags=["demand"])
    async def demand(req: DemandRequest, request: Request) -> dict[str, Any]:
        """Quantile forecasts of units sold per period for each item."""
        return await ingress.demand(req, request)

    @app.post(f"{API_PREFIX}/risk", response_model=RiskResponse, responses=errors, tags=["risk"])
    async def risk(req: RiskRequest, request: Request) -> dict[str, Any]:
        """Probability that each order is returned, and whether it crosses the threshold."""
        return await ingress.risk(req, request)

    @app.post(f"{API_PREFIX}/insights", response_model=InsightsResponse, responses=errors, tags=["insights"])
    async def insights(req: InsightsRequest, request: Request) -> dict[str, Any]:
        """Recommendations re-ranked by expected demand and return risk (signals not configured are skipped)."""
        return await ingress.insights(req, request)

    @app.post(f"{API_PREFIX}/events", response_model=EventsResponse, responses=errors, tags=["events"])
    async def events(req: EventsRequest, request: Request) -> dict[str, Any]:
        """Store a batch of user events (view, click, cart, purchase, return): the next recommendation for each
        user reads them, and the event log that retraining reads gets them. A 200 means every accepted event is
        stored durably; a retry with the same event_ids stores each once (duplicates counts them)."""
        return await ingress.events(req, request)

    @app.get(f"{API_PREFIX}/models", response_model=ModelsResponse, responses=errors, tags=["operations"])
    async def models() -> dict[str, Any]:
        """What every route serves: versions per arm, traffic policy, shadow comparisons."""
        return await ingress.models()

    @app.get(f"{API_PREFIX}/drift", response_model=DriftResponse, responses=errors, tags=["operations"])
    async def drift() -> dict[str, Any]:
        """Each arm's live drift window: samples of its request features (what `ecomine monitor` reads)."""
        return await ingress.drift()

    @app.get(f"{API_PREFIX}/limits", response_model=LimitsResponse, responses=errors, tags=["operations"])
    async def limits() -> dict[str, Any]:
        """The per-request limits this deployment enforces (the SDK sizes its chunks by them)."""
        return ingress.args.limits.model_dump()

    @app.get("/healthz", response_model=HealthResponse, tags=["operations"])
    async def healthz() -> dict[str, Any]:
        """Liveness: the ingress answers (no API key needed; says nothing about the models, see /readyz)."""
        return {"status": "ok", "tasks": list(ingress.routers), "ecomine": ecomine.__version__}

    @app.get("/readyz", response_model=HealthResponse, tags=["operations"],
             responses={503: {"model": HealthResponse, "description": "an arm has no model loaded (detail names it)"}})
    async def readyz() -> JSONResponse:
        """Readiness: 200 once every configured arm has a model loaded (status ``degraded``, naming the arm,
        when one refused the version its config asks for and serves its previous one), else 503 naming them."""
        ready, body = await ingress.readiness()
        return JSONResponse(body, status_code=200 if ready else 503)

    app.openapi = lambda: deployment_openapi(app, ingress.args, bool(ingress.keys))  # type: ignore[method-assign]

    # outermost first: the guard (API key, size, content type, the whole body within body_timeout_s),
    # then admission (a slot only for an authorised request whose body is here: slow or
    # unauthenticated clients hold none), then the request id / metrics / log line of what is admitted
    app.add_middleware(ObserveMiddleware, on_done=ingress._observe)
    if ingress.max_in_flight is not None:  # a refused request costs no request id, log line or parse
        app.add_middleware(
            AdmissionMiddleware, max_in_flight=ingress.max_in_flight, retry_after_s=ingress.args.ingress.retry_after_s,
            hold_s=ingress.args.ingress.shed_hold_s, on_shed=ingress.metrics.shed,
        )
    app.add_middleware(
        GuardMiddleware, keys=ingress.keys, max_body_bytes=ingress.args.limits.max_body_bytes,
        body_timeout_s=ingress.args.ingress.body_timeout_s, on_refuse=ingress._refused,
    )
    return app
