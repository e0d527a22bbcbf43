"""The HTTP ingress: the deployment whose methods answer the ``/v1`` routes, in front of the model deployments.

Sits at the top of a served app (``ecomine.serve.app.build`` binds it to the
model deployments' handles; ``ecomine.serve.http_app`` builds its FastAPI app). It
checks per-deployment limits, resolves user histories (``ecomine.serve.histories``:
the training snapshot and the live events), takes ``POST /v1/events`` into the live
store (``ecomine.serve.live_events``), hands each call to the task's router
(``ecomine.serve.router``: champion or challenger, timeout, shadow), leaves the
``/v1/insights`` re-ranking to ``ecomine.serve.insights`` and colocated arms to
``ecomine.serve.colocation``, and records metrics and one hashed log line per
request (``ecomine.serve.observability``). The FastAPI app is built in the
replica (``__serve_build_asgi_app__``), from the app's args, never at import.

Status codes: 200; 400 (a body that is not UTF-8 or nests too deep, saying
which); 401 (API key); 413 (body size); 415 (a Content-Type other than JSON);
422 (invalid input: the
``detail`` names the field); 503 (a task not configured, its model
unavailable, the live store not answering, or ``ingress.max_in_flight`` requests in
flight already: then with ``Retry-After``, answered before the body is read); 504 (a model did not answer
in ``ingress.model_timeout_s``).
"""

import asyncio
import os
from typing import Any, Optional

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from ray import serve

import ecomine
from ecomine.api.events import EventsRequest
from ecomine.api.schema import API_PREFIX, DemandRequest, InsightsRequest, RecommendRequest, RiskRequest
from ecomine.predict.answers import dated_orders
from ecomine.predict.state import reconfigure_failure
from ecomine.serve.arm_options import admission_limit
from ecomine.serve.colocation import local_arms, local_handles, reconfigure_arms
from ecomine.serve.config import AppArgs
from ecomine.serve.histories import Resolved, UserHistories
from ecomine.serve.http_app import build_http_app
from ecomine.serve.insights import NOT_CONFIGURED, compose
from ecomine.serve.live_events import LiveEvents
from ecomine.serve.observability import ServeMetrics, hash_user_id, log_event, resolve_salt, warn_event
from ecomine.serve.router import HTTPError, TaskRouter
from ecomine.serve.security import resolve_api_keys
from ecomine.serve.traffic import routing_key

__all__ = ["Ingress", "NOT_CONFIGURED"]

_ROUTES = (
    f"{API_PREFIX}/recommend", f"{API_PREFIX}/demand", f"{API_PREFIX}/risk", f"{API_PREFIX}/insights",
    f"{API_PREFIX}/events", f"{API_PREFIX}/models", f"{API_PREFIX}/drift", f"{API_PREFIX}/limits", "/healthz",
    "/readyz", "/docs",
    "/openapi.json",
)
_PROBES = ("/healthz", "/readyz")  # not logged line by line
_LIVE_OFF = ("live events are off for this app: set args.live.store (sqlite: a file on this machine; redis: "
             "a server every replica shares)")


def _route(path: str) -> str:
    """The metrics label of a path relative to the app: a known route, else "other" (bounded cardinality)."""
    return path if path in _ROUTES else "other"


def _invalid(loc: list[Any], msg: str) -> RequestValidationError:
    return RequestValidationError([{"loc": tuple(loc), "msg": msg, "type": "value_error"}])


def _limit(value: int, limit: int, loc: list[Any], what: str) -> None:
    if value > limit:
        raise _invalid(loc, f"{value} {what} exceed this deployment's limit of {limit}")


@serve.deployment(name="Ingress", ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=256)
@serve.ingress()
class Ingress:
    """The ``/v1`` HTTP API over the model deployments (see the module docstring)."""

    async def __init__(self, args: dict[str, Any], handles: Optional[dict[str, dict[str, Any]]]) -> None:
        self.args = AppArgs.model_validate(args)
        self._local: Optional[dict[str, Any]] = None
        self._reconfigure_error: Optional[dict[str, Any]] = None
        if handles is None:  # ingress.colocate: the arms run in this replica
            self._local = local_arms(self.args)
            handles = local_handles(self.args, self._local)
        # colocated arms load in the first reconfigure (the replica's start); otherwise it serves already
        self._configured = self._local is None
        self.metrics = ServeMetrics()
        self.max_in_flight = admission_limit(self.args)
        obs, auth = self.args.observability, self.args.auth
        self.salt = resolve_salt(obs.user_hash_salt_env, required=obs.require_salt)
        self.keys = resolve_api_keys(
            [k.get_secret_value() for k in auth.api_keys], auth.api_keys_env, file=auth.api_keys_file
        )
        if not self.keys:
            warn_event("auth_off", reason=f"no API keys (auth.api_keys, ${auth.api_keys_env or '-'}, "
                       f"auth.api_keys_file): every /v1 route is open to whoever reaches this port")
        self.routers = {
            task: TaskRouter(
                task, task_args, handles[task], timeout_s=self.args.ingress.model_timeout_s, salt=self.salt,
                metrics=self.metrics, shadow_keep=self.args.observability.shadow_keep,
            )
            for task, task_args in self.args.tasks().items()
        }
        self.live: Optional[LiveEvents] = None
        if self.args.live.store != "off":
            # the store keeps the first salt it is given: the app's own (from its environment), or one it draws
            env_salt = os.environ.get(obs.user_hash_salt_env) if obs.user_hash_salt_env else None
            self.live = await LiveEvents.open(self.args.live, env_salt or None,
                                              retry_after_s=self.args.ingress.retry_after_s, s3=self.args.s3)
        self.histories = await UserHistories.load(
            self.args.recommend.users_uri, self.live, self.args.limits.max_history, self.args.s3)

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Colocated arms only: ``{deployment name: ModelSettings}``, applied (and swapped) arm by arm.

        The first call (the replica starting) raises what it cannot apply; later ones never do
        (Serve would stop a serving replica): the refusal is kept in ``last_reconfigure_error``
        (``GET /v1/models``) and logged, and the arms serve on as before."""
        try:
            if self._local is None:
                if user_config:
                    raise ValueError("Ingress: a user_config is only taken with ingress.colocate: true")
                return
            await reconfigure_arms(self._local, user_config)
        except Exception as exc:
            if not self._configured:
                raise
            self._reconfigure_error = reconfigure_failure(None, exc)
            self.metrics.reconfigure("Ingress", failed=True)
            log_event("reconfigure_refused", deployment="Ingress", error=self._reconfigure_error["reason"])
            return
        finally:
            self._configured = True
        self._reconfigure_error = None

    # ----------------------------------------------------------------- observation

    def _refused(self, path: str, status: int) -> None:
        """The guard's own answers (401, 408, 413, 415, 400) in the request metrics; no log line each."""
        self.metrics.request(_route(path), status, "-", "-", 0.0)

    def _observe(self, scope: dict, state: dict, status: int, ms: float) -> None:
        path = scope.get("path", "")
        root = scope.get("root_path", "") or ""
        if root and path.startswith(root):
            path = path[len(root):]
        route = _route(path)
        self.metrics.request(route, status, state.get("model") or "-", state.get("variant") or "-", ms)
        if state.get("fallback_code"):
            self.metrics.fallback(route, state["fallback_code"])
        if self.args.observability.log_requests and route not in _PROBES:
            log_event(
                "request", route=route, method=scope.get("method"), status=status, ms=round(ms, 2),
                request_id=state.get("request_id"), user=state.get("user"), variant=state.get("variant"),
                model=state.get("model"), fallback=state.get("fallback"),
            )

    def _who(self, request: Request, user_id: Optional[str]) -> Optional[str]:
        user_hash = hash_user_id(user_id, self.salt)
        request.state.user = user_hash
        return user_hash

    def _router(self, task: str) -> TaskRouter:
        router = self.routers.get(task)
        if router is None:
            raise HTTPError(503, NOT_CONFIGURED.format(task=task))
        return router

    # ----------------------------------------------------------------- the route bodies

    def _explain(self, asked: bool) -> dict[str, int] | bool:
        """What a model deployment needs of ``explain: true``: this deployment's max_explain_* limits."""
        if not asked:
            return False
        return {k: v for k, v in self.args.limits.model_dump().items() if k.startswith("max_explain_")}

    async def _recommend_payload(self, req: RecommendRequest | InsightsRequest,
                                 k: int) -> tuple[dict[str, Any], str, Resolved]:
        limits = self.args.limits
        _limit(req.k, limits.max_k, ["body", "k"], "items (k)")
        _limit(len(req.exclude), limits.max_exclude, ["body", "exclude"], "excluded items")
        if req.history is not None:
            _limit(len(req.history), limits.max_history, ["body", "history"], "history items")
        resolved = await self.histories.resolve(req.user_id, req.history)
        payload = {
            "history": resolved.history, "k": k, "exclude": list(req.exclude),
            "exclude_history": req.exclude_history, "categories": req.categories, "fallback_reason": resolved.fallback,
            "explain": self._explain(getattr(req, "explain", False)),
        }
        return payload, routing_key(req.user_id, resolved.history), resolved

    @staticmethod
    def _history_note(result: dict[str, Any], resolved: Resolved) -> dict[str, Any]:
        """The answer says which history it scored, and when the live store did not answer."""
        out = {**result, "history_source": resolved.source}
        if resolved.live_error:
            note = f"live history unavailable ({resolved.live_error}): the training snapshot instead"
            out["fallback_reason"] = f"{result['fallback_reason']}; {note}" if result.get("fallback_reason") else note
        return out

    async def recommend(self, req: RecommendRequest, request: Request) -> dict[str, Any]:
        user_hash = self._who(request, req.user_id)
        payload, key, resolved = await self._recommend_payload(req, req.k)
        result, arm = await self._router("recommend").call(
            "recommend", payload, key=key, request_id=request.state.request_id, user_hash=user_hash
        )
        if "error" in result:
            err = result["error"]
            raise _invalid(err["loc"], err["msg"])
        self._mark(request, result, arm)
        return {**self._history_note(result, resolved), "variant": arm, "request_id": request.state.request_id}

    async def demand(self, req: DemandRequest, request: Request) -> dict[str, Any]:
        router = self._router("demand")
        limits = self.args.limits
        _limit(len(req.item_ids), limits.max_demand_items, ["body", "item_ids"], "item ids")
        if req.horizon is not None:  # unset: the served model's own horizon
            _limit(req.horizon, limits.max_horizon, ["body", "horizon"], "periods (horizon)")
        self._who(request, None)
        result, arm = await router.call(
            "forecast", {**req.model_dump(), "explain": self._explain(req.explain)}, key=routing_key(None, req.item_ids),
            request_id=request.state.request_id, user_hash=None,
        )
        if "error" in result:
            raise _invalid(result["error"]["loc"], result["error"]["msg"])
        self._mark(request, result, arm)
        return {**result, "variant": arm, "request_id": request.state.request_id}

    async def risk(self, req: RiskRequest, request: Request) -> dict[str, Any]:
        router = self._router("risk")
        limits = self.args.limits
        _limit(len(req.orders), limits.max_orders, ["body", "orders"], "orders")
        for n, order in enumerate(req.orders):
            _limit(len(order.lines), limits.max_order_lines, ["body", "orders", n, "lines"], "lines")
        orders = dated_orders([o.model_dump() for o in req.orders])
        first_user = next((o.user_id for o in req.orders if o.user_id), None)
        user_hash = self._who(request, first_user)
        key = routing_key(first_user, [o.order_id or "" for o in req.orders])
        result, arm = await router.call(
            "score", {"orders": orders, "explain": self._explain(req.explain)}, key=key,
            request_id=request.state.request_id, user_hash=user_hash,
        )
        if "error" in result:
            raise _invalid(result["error"]["loc"], result["error"]["msg"])
        self._mark(request, result, arm)
        return {**result, "variant": arm, "request_id": request.state.request_id}

    async def insights(self, req: InsightsRequest, request: Request) -> dict[str, Any]:
        limits = self.args.limits
        if req.horizon is not None:
            _limit(req.horizon, limits.max_horizon, ["body", "horizon"], "periods (horizon)")
        if req.candidates is not None:
            _limit(req.candidates, limits.max_k, ["body", "candidates"], "candidates")
        pool = req.candidates or min(limits.max_k, max(3 * req.k, 20))
        pool = max(pool, req.k)
        user_hash = self._who(request, req.user_id)
        payload, key, resolved = await self._recommend_payload(req, pool)
        rid = request.state.request_id
        rec, arm = await self._router("recommend").call("recommend", payload, key=key, request_id=rid, user_hash=user_hash)
        if "error" in rec:
            raise _invalid(rec["error"]["loc"], rec["error"]["msg"])
        self._mark(request, rec, arm)
        rec = self._history_note(rec, resolved)
        return await compose(self.routers, req, rec, arm, key=key, request_id=rid, user_hash=user_hash)

    async def events(self, req: EventsRequest, request: Request) -> dict[str, Any]:
        if self.live is None:
            raise HTTPError(503, _LIVE_OFF)
        _limit(len(req.events), self.args.limits.max_events, ["body", "events"], "events")
        self._who(request, req.events[0].user_id)
        # the write and the question to the model are independent: one waits for the other's round trip no more
        stored, (unknown, checked) = await asyncio.gather(
            self.live.accept(req.events), self._unknown_items([e.item_id for e in req.events]))
        return {"accepted": stored.accepted, "duplicates": stored.duplicates, "unknown_items": unknown,
                "items_checked": checked, "request_id": request.state.request_id}

    async def _unknown_items(self, items: list[str]) -> tuple[list[str], bool]:
        """The items the served recommender (its champion) does not know; ``([], False)`` when it cannot say."""
        router = self.routers.get("recommend")
        if router is None:
            return [], False
        try:
            answer = await router.champion_call("unknown_items", {"items": list(dict.fromkeys(items))})
        except HTTPError:
            return [], False
        return list(answer.get("unknown", [])), True

    def _mark(self, request: Request, result: dict[str, Any], arm: str) -> None:
        request.state.model = result.get("model")
        request.state.variant = arm
        request.state.fallback = bool(result.get("fallback"))
        request.state.fallback_code = result.get("fallback_code")

    async def models(self) -> dict[str, Any]:
        infos = await asyncio.gather(*(r.arm_info() for r in self.routers.values()))
        arms = [a for info in infos for a in (info["champion"], info.get("challenger")) if a is not None]
        healthy = self._reconfigure_error is None and all(a.get("status") == "ok" for a in arms)
        return {
            "status": "ok" if healthy else "degraded",
            "tasks": dict(zip(self.routers, infos)),
            "not_configured": [t for t in ("recommend", "demand", "risk") if t not in self.routers],
            "last_reconfigure_error": self._reconfigure_error,
        }

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Every configured arm has a model loaded (``GET /readyz``); the body names those that do not."""
        found = await asyncio.gather(*(r.readiness() for r in self.routers.values()))
        arms = {name: r for per_task in found for name, r in per_task.items()}
        ready = bool(arms) and all(r["ready"] for r in arms.values())
        not_ready = {name: str(r.get("detail")) for name, r in arms.items() if not r["ready"]}
        # ready (it answers) but degraded: an arm or the ingress refused the version its config asks for
        degraded = {name: str(r["degraded"]) for name, r in arms.items() if r["ready"] and r.get("degraded")}
        if self._reconfigure_error:
            degraded["Ingress"] = f"refused version {self._reconfigure_error.get('version')}: {self._reconfigure_error.get('reason')}"
        status = "unavailable" if not ready else ("degraded" if degraded else "ok")
        return ready, {"status": status, "tasks": list(self.routers), "ecomine": ecomine.__version__,
                       "detail": {**not_ready, **degraded}}

    async def drift(self) -> dict[str, Any]:
        windows = await asyncio.gather(*(r.drift_windows() for r in self.routers.values()))
        return {"tasks": dict(zip(self.routers, windows))}

    # ----------------------------------------------------------------- the FastAPI app

    def __serve_build_asgi_app__(self) -> Any:
        return build_http_app(self)

    def __del__(self) -> None:  # Serve ends a replica: stop draining, close the store
        live = getattr(self, "live", None)
        if live is not None:
            live.close()
