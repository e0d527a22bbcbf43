"""Metrics and request logs of a served ecomine app.

Sits inside ``ecomine.serve``: the ingress and the model deployments record
through it. Custom metrics go through ``ray.util.metrics`` (exported with Ray
Serve's own on the Ray metrics endpoint, Prometheus format); they are created
on first use inside a replica, never at import. Logs go to the ``ray.serve``
logger (Serve writes them into each replica's log file) as one ``key=value``
line per request, and carry a salted hash of the user id, never the id itself.

Metrics (all prefixed ``ecomine_``)::

    requests_total        counter    route, status, model, variant
    request_latency_ms    histogram  route
    fallbacks_total       counter    route, reason
    batch_size            histogram  deployment
    shadow_agreement      histogram  task
    model_swaps_total     counter    deployment
    reconfigure_failures_total counter deployment   (a user_config a serving replica refused)
    reconfigure_failed    gauge      deployment   1 while the last reconfigure was refused, else 0
    shed_total            counter    route          requests refused by the in-flight limit (503)
    drift_psi             gauge      deployment, task, feature   (ecomine.serve.monitor)
    drift_ks              gauge      deployment, task, feature
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

__all__ = [
    "LOGGER_NAME",
    "DEFAULT_SALT",
    "hash_user_id",
    "resolve_salt",
    "log_event",
    "warn_event",
    "ServeMetrics",
    "ObserveMiddleware",
]

LOGGER_NAME = "ray.serve.ecomine"
DEFAULT_SALT = "ecomine-user-hash"  # public: never used to hash (kept for readers of old logs)
_LATENCY_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]
_BATCH = [1, 2, 4, 8, 16, 32, 64, 128, 256]
_AGREEMENT = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.99]


def resolve_salt(env_name: str | None, environ: dict[str, str] | None = None, *, required: bool = False) -> str:
    """The user-hash salt: the value of ``env_name`` when set.

    Unset, it fails closed: with ``required`` (``observability.require_salt``, set in
    ``serve_configs/production.yaml``) a ValueError refuses to start; otherwise a random salt
    is drawn for this replica (hashes then match only within one replica's lifetime, never
    across replicas or restarts) and one warning line says so. The public ``DEFAULT_SALT`` is
    never used: with it, hashes of guessable ids (``17850``) were reversed by trying every id.
    """
    env = os.environ if environ is None else environ
    if env_name and env.get(env_name):
        return env[env_name]
    where = f"${env_name}" if env_name else "observability.user_hash_salt_env"
    if required:
        raise ValueError(
            f"observability.user_hash_salt_env: {where} is unset, and observability.require_salt is true: "
            "refusing to start; set a secret salt in the replicas' environment"
        )
    warn_event("user_hash_salt_random", reason=f"{where} is unset: logged user hashes use a random salt of this "
               "replica (not comparable across replicas or restarts); set a secret salt")
    return secrets.token_hex(16)


def hash_user_id(user_id: str | None, salt: str) -> str | None:
    """``u_`` + 16 hex of HMAC-SHA256(salt, user_id): stable per salt, not reversible without it."""
    if user_id is None:
        return None
    return "u_" + hmac.new(salt.encode(), user_id.encode(), hashlib.sha256).hexdigest()[:16]


def _format(value: Any) -> str:
    text = str(value)
    return repr(text) if (" " in text or "=" in text or not text) else text


def log_event(event: str, **fields: Any) -> str:
    """Log one ``event key=value ...`` line at INFO on ``LOGGER_NAME``; returns the line.

    Callers pass hashed user ids only (``user=hash_user_id(...)``).
    """
    line = " ".join([f"ecomine.{event}", *(f"{k}={_format(v)}" for k, v in fields.items() if v is not None)])
    logging.getLogger(LOGGER_NAME).info(line)
    return line


def warn_event(event: str, **fields: Any) -> str:
    """``log_event`` at WARNING: one line an operator should not miss."""
    line = " ".join([f"ecomine.{event}", *(f"{k}={_format(v)}" for k, v in fields.items() if v is not None)])
    logging.getLogger(LOGGER_NAME).warning(line)
    return line


class ServeMetrics:
    """The app's custom metrics, created on first use (inside a Ray worker)."""

    def __init__(self) -> None:
        self._made = False

    def _make(self) -> None:
        from ray.util.metrics import Counter, Gauge, Histogram

        self._requests = Counter(
            "ecomine_requests_total", description="requests by route, HTTP status, model and variant",
            tag_keys=("route", "status", "model", "variant"),
        )
        self._latency = Histogram(
            "ecomine_request_latency_ms", description="ingress latency per route", boundaries=_LATENCY_MS,
            tag_keys=("route",),
        )
        self._fallbacks = Counter(
            "ecomine_fallbacks_total", description="answers that fell back to popular items / cold start",
            tag_keys=("route", "reason"),
        )
        self._batch = Histogram(
            "ecomine_batch_size", description="requests per model batch", boundaries=_BATCH, tag_keys=("deployment",)
        )
        self._shadow = Histogram(
            "ecomine_shadow_agreement", description="champion vs challenger agreement in shadow mode",
            boundaries=_AGREEMENT, tag_keys=("task",),
        )
        self._swaps = Counter(
            "ecomine_model_swaps_total", description="model versions swapped in place", tag_keys=("deployment",)
        )
        self._reconfigure_failures = Counter(
            "ecomine_reconfigure_failures_total",
            description="user_configs a serving replica refused (the old model kept serving)", tag_keys=("deployment",),
        )
        self._reconfigure_failed = Gauge(
            "ecomine_reconfigure_failed",
            description="1 while the replica's last reconfigure was refused (GET /v1/models: degraded), else 0",
            tag_keys=("deployment",),
        )
        self._shed = Counter(
            "ecomine_shed_total", description="requests refused by the ingress in-flight limit (503)",
            tag_keys=("route",),
        )
        self._drift_psi = Gauge(
            "ecomine_drift_psi", description="PSI of live request features vs the version's reference profile",
            tag_keys=("deployment", "task", "feature"),
        )
        self._drift_ks = Gauge(
            "ecomine_drift_ks", description="two-sample KS statistic of live features vs the reference profile",
            tag_keys=("deployment", "task", "feature"),
        )
        self._made = True

    def _ready(self) -> bool:
        if not self._made:
            try:
                self._make()
            except Exception:  # metrics must never break serving (e.g. outside Ray)
                return False
        return True

    def request(self, route: str, status: int, model: str, variant: str, latency_ms: float) -> None:
        if self._ready():
            self._requests.inc(tags={"route": route, "status": str(status), "model": model or "-", "variant": variant})
            self._latency.observe(latency_ms, tags={"route": route})

    def fallback(self, route: str, reason: str) -> None:
        if self._ready():
            self._fallbacks.inc(tags={"route": route, "reason": reason})

    def batch(self, deployment: str, size: int) -> None:
        if self._ready():
            self._batch.observe(size, tags={"deployment": deployment})

    def shadow(self, task: str, agreement: float) -> None:
        if self._ready():
            self._shadow.observe(agreement, tags={"task": task})

    def swap(self, deployment: str) -> None:
        if self._ready():
            self._swaps.inc(tags={"deployment": deployment})

    def reconfigure(self, deployment: str, *, failed: bool) -> None:
        """A reconfigure's outcome: a refusal counts and raises the gauge; a success lowers it."""
        if self._ready():
            if failed:
                self._reconfigure_failures.inc(tags={"deployment": deployment})
            self._reconfigure_failed.set(1.0 if failed else 0.0, tags={"deployment": deployment})

    def shed(self, route: str) -> None:
        if self._ready():
            self._shed.inc(tags={"route": route})

    def drift(self, deployment: str, task: str, features: list[dict[str, Any]]) -> None:
        """Set the drift gauges from a drift report's feature rows (rows without numbers are left alone)."""
        if self._ready():
            for f in features:
                tags = {"deployment": deployment, "task": task, "feature": f["feature"]}
                if f.get("psi") is not None:
                    self._drift_psi.set(f["psi"], tags=tags)
                if f.get("ks") is not None:
                    self._drift_ks.set(f["ks"], tags=tags)


_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class ObserveMiddleware:
    """The ingress's innermost ASGI layer (inside the guard and admission): a request id (the caller's
    ``X-Request-ID`` when well-formed), ``X-Ecomine-Variant`` / ``-Model`` headers from the request
    state, and ``on_done(scope, state, status, ms)`` once the answer is sent (metrics, the log line)."""

    def __init__(self, app: Any, *, on_done: Callable[[dict, dict, int, float], None]) -> None:
        self.app = app
        self.on_done = on_done

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        given = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"x-request-id"), None)
        request_id = given if given and _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:16]
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status_holder = {"status": 500}

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"])
                if request_id != given:  # Serve's proxy echoes the id it sent; add ours only when it is new
                    message["headers"].append((b"x-request-id", request_id.encode()))
                for name in ("variant", "model"):
                    if state.get(name):
                        message["headers"].append((f"x-ecomine-{name}".encode(), str(state[name]).encode("latin-1", "replace")))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.on_done(scope, state, status_holder["status"], (time.perf_counter() - t0) * 1000.0)
