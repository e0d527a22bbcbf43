"""Model deployments: Recommender, DemandForecaster, RiskScorer, and Ensemble.

Sits in ``ecomine.serve`` under the ingress: each deployment serves one arm of
a task, holding a ``runtime.ModelState`` (the loaded version or versions; see
``ecomine.predict.runtime`` for loading, the loader protocol and how ensembles
combine). Requests go through a ``batching.Batcher`` (size and wait from the
``user_config``; size 1 calls the model directly), which cuts a batch when the
model is free rather than on a timer. ``reconfigure(user_config)``
swaps the model in place: the new version is fetched (sha256-verified) and
loaded beside the old one, then one reference flips, so requests in flight
finish on the old model and none fail; a version that fails to load leaves
the old one serving and the error in ``info()``. Each loaded state carries an
``ArmMonitor`` (``ecomine.serve.monitor``): every answer adds its drift
features to a bounded window, and a background task publishes PSI / KS as
Prometheus gauges every ``DRIFT_PUBLISH_S``.

``Recommender`` / ``DemandForecaster`` / ``RiskScorer`` serve one version
(``user_config.version``); ``Ensemble`` serves ``user_config.members`` of the
task given at bind time, in the same replica.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ray import serve

from ecomine import storage
from ecomine.predict.answers import (
    demand_horizon,
    demand_job,
    finish_demand,
    finish_recommend,
    finish_risk,
    plan_recommend,
    risk_job,
)
from ecomine.predict.explain import explain_request
from ecomine.predict.ranking import Rejected
from ecomine.predict.runtime import load_state, run_jobs
from ecomine.predict.state import ModelLoadError, ModelState, TASKS, reconfigure_failure
from ecomine.registry import Registry
from ecomine.serve.batching import Batcher
from ecomine.serve.config import DEFAULT_LOADERS, ModelSettings
from ecomine.serve.monitor import ArmMonitor
from ecomine.serve.observability import ServeMetrics, log_event
from ecomine.storage import S3Options

__all__ = ["ModelLoadError", "Recommender", "DemandForecaster", "RiskScorer", "Ensemble", "model_deployment",
           "DRIFT_PUBLISH_S"]

DRIFT_PUBLISH_S = 30.0  # seconds between two drift computations for the Prometheus gauges


class _ModelServer:
    """Shared body of every model deployment; subclasses fix the task and single/ensemble."""

    TASK: str | None = None
    ENSEMBLE: bool = False
    # Where a batch runs. In a model replica of its own: inline on the replica's user event loop (Serve
    # keeps its networking on another loop, and a thread only adds GIL contention: measured ~30 % more
    # requests/s at c=64 on 2 cores). Colocated in the ingress: in a worker thread, so the same loop
    # keeps parsing HTTP meanwhile (the ingress sets this).
    offload_compute: bool = False

    def __init__(
        self,
        *,
        registry: str,
        name: str,
        task: str | None = None,
        loader: str | None = None,
        s3: dict[str, Any] | None = None,
        catalogue_uri: str | None = None,
        threshold: float | None = None,
        fallback: dict[str, Any] | None = None,
    ) -> None:
        self.task = self.TASK or task
        if self.task not in TASKS:
            raise ValueError(f"{name}: task must be one of {list(TASKS)}, got {task!r}")
        self.name = name
        self.registry = Registry(registry, s3=S3Options(**s3) if s3 else None)
        self.loader_path = loader or DEFAULT_LOADERS[self.task]
        self.catalogue_uri = catalogue_uri
        self.threshold = threshold
        # the settings the app's args name (resolved when the app was built): what a replica starts on
        # when the user_config it is given cannot load
        self._fallback = fallback
        self._catalogue: Any = None
        self._state: ModelState | None = None
        self._settings: ModelSettings | None = None
        self._lock = asyncio.Lock()
        self._metrics = ServeMetrics()
        self._last_error: str | None = None
        self._reconfigure_error: dict[str, Any] | None = None  # the last refused user_config (reconfigure_failure)
        self._drift_publisher: asyncio.Task | None = None
        self._observe_failed = False
        self._batcher = Batcher(self._run, on_batch=lambda n: self._metrics.batch(self.name, n))

    # ----------------------------------------------------------------- configuration and swap

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply a ``ModelSettings``: the version set is loaded and verified first, then swapped in.

        A replica already serving never raises here (Serve would stop it: a deployment of two
        replicas would silently run on one): a config it cannot apply leaves the old model and
        settings in place and is recorded (``last_reconfigure_error``: version, file, reason),
        reported on ``GET /v1/models`` (status ``degraded``), in the log and in the
        ``ecomine_reconfigure_failed`` gauge. On the first load there is nothing to keep: a replica
        (re)starting on a user_config it cannot load starts on the settings the app's args name
        (its ``fallback``, checked when the app was built) and reports the refusal the same way, so
        a refused version written into a deployment's config never keeps replicas from starting;
        only when that fails too is the error raised (Serve then retries the replica).
        """
        try:
            previous, state = await self._apply(user_config)
        except Exception as exc:
            self._last_error = f"{type(exc).__name__}: {exc}"
            failure = reconfigure_failure(user_config, exc)
            log_event("model_load_failed", deployment=self.name, version=failure["version"], file=failure["file"],
                      error=self._last_error, kept=self._state.label if self._state is not None else None)
            if self._state is None and not await self._start_on_fallback(user_config):
                raise
            self._reconfigure_error = failure
            self._metrics.reconfigure(self.name, failed=True)
            return
        self._reconfigure_error = None
        self._metrics.reconfigure(self.name, failed=False)
        if self._drift_publisher is None:
            self._drift_publisher = asyncio.ensure_future(self._publish_drift())
        if previous is None or previous.versions != state.versions or previous.weights != state.weights:
            if previous is not None:
                self._metrics.swap(self.name)
            log_event(
                "model_swap" if previous is not None else "model_loaded",
                deployment=self.name, model=state.label,
                previous=previous.label if previous is not None else None,
            )

    async def _apply(self, user_config: dict[str, Any]) -> tuple[ModelState | None, ModelState]:
        """Load and verify the settings' version set, then swap it in; returns (previous, new) state."""
        settings = self._parse_settings(user_config)
        async with self._lock:
            previous = self._state
            refs = [(m.version, m.weight) for m in settings.refs()]
            state = await asyncio.to_thread(self._load, refs)
            self._state = state  # the swap: one reference; requests in flight keep their snapshot
            self._settings = settings
            self._last_error = None
            self._batcher.configure(max_batch_size=settings.max_batch_size, wait_s=settings.batch_wait_timeout_s)
        return previous, state

    async def _start_on_fallback(self, refused: dict[str, Any]) -> bool:
        """A first load that failed: start on the args' settings instead (True), unless they are what failed."""
        if not self._fallback or self._fallback == (refused or {}):
            return False
        try:
            _, state = await self._apply(self._fallback)
        except Exception as exc:  # noqa: BLE001 - the original refusal is what gets raised
            log_event("model_fallback_failed", deployment=self.name, error=f"{type(exc).__name__}: {exc}")
            return False
        log_event("model_loaded", deployment=self.name, model=state.label, fallback=True)
        if self._drift_publisher is None:
            self._drift_publisher = asyncio.ensure_future(self._publish_drift())
        return True

    def _parse_settings(self, user_config: dict[str, Any]) -> ModelSettings:
        from pydantic import ValidationError

        try:
            settings = ModelSettings.model_validate(user_config or {})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "user_config"
            raise ValueError(f"{self.name}: user_config.{where}: {first['msg']}") from None
        if settings.is_ensemble != self.ENSEMBLE:
            want = "members: [...] (an Ensemble deployment)" if self.ENSEMBLE else "version: ... (one model)"
            raise ValueError(f"{self.name}: this deployment's user_config takes {want}")
        return settings

    def _load(self, refs: list[tuple[str, float]]) -> ModelState:
        if self.task == "recommend" and self.catalogue_uri and self._catalogue is None:
            table = storage.read_parquet(self.catalogue_uri, options=self.registry.s3)
            if "item_id" not in table.columns:
                raise ModelLoadError(f"{self.name}: catalogue {self.catalogue_uri} has no item_id column")
            self._catalogue = table
        state = load_state(
            self.registry, self.task, refs, loader_path=self.loader_path, current=self._state,
            catalogue=self._catalogue, threshold=self.threshold, name=self.name,
        )
        prev = self._state
        same = prev is not None and prev.versions == state.versions and prev.weights == state.weights
        # a batching-only change keeps the window; another version set starts a new one against its profile
        state.extra["monitor"] = prev.extra["monitor"] if same else ArmMonitor(state)
        return state

    async def check_health(self) -> None:
        if self._state is None:
            raise RuntimeError(f"{self.name}: no model loaded" + (f" ({self._last_error})" if self._last_error else ""))

    async def ready(self) -> dict[str, Any]:
        """Readiness of this replica (``GET /readyz``): a model is loaded. Cheap: no drift report."""
        state = self._state
        out = {"deployment": self.name, "ready": state is not None,
               "detail": state.label if state is not None else (self._last_error or "loading")}
        if state is not None and self._reconfigure_error:  # serving, but not what its config asks for
            err = self._reconfigure_error
            out["degraded"] = f"refused version {err.get('version')}: {err.get('reason')}; still serving {state.label}"
        return out

    async def info(self) -> dict[str, Any]:
        """What this replica serves (the ``ArmInfo`` of ``GET /v1/models``)."""
        state, settings = self._state, self._settings
        kind = "ensemble" if self.ENSEMBLE else "single"
        if state is None:
            return {"deployment": self.name, "kind": kind, "status": "unavailable", "detail": self._last_error or "loading"}
        refused = self._reconfigure_error
        return {
            "deployment": self.name,
            "kind": kind,
            "status": "degraded" if refused else "ok",
            "detail": self._last_error,
            "last_reconfigure_error": refused,
            "model": state.label,
            "members": [
                {"version": m.version, "ref": m.ref, "weight": w, "created_at": m.created_at, "stages": m.stages}
                for m, w in zip(state.members, state.weights)
            ],
            "loaded_at": state.loaded_at,
            "device": state.extra.get("device"),
            "max_batch_size": settings.max_batch_size if settings else None,
            "batch_wait_timeout_s": settings.batch_wait_timeout_s if settings else None,
            "drift": await self._drift_report(state),
        }

    # ----------------------------------------------------------------- drift

    async def _drift_report(self, state: ModelState) -> dict[str, Any] | None:
        monitor = state.extra.get("monitor")
        if monitor is None:
            return None
        report = await asyncio.to_thread(monitor.report)  # scipy's first import alone takes a second
        self._metrics.drift(self.name, self.task, report.get("features", []))
        return report

    async def drift_window(self) -> dict[str, Any]:
        """What ``GET /v1/drift`` returns for this arm: the served versions and the live samples."""
        state = self._state
        if state is None or "monitor" not in state.extra:
            return {"deployment": self.name, "status": "unavailable", "detail": self._last_error or "loading"}
        return {"deployment": self.name, "status": "ok", "versions": state.versions, **state.extra["monitor"].window_json()}

    async def _publish_drift(self) -> None:
        while True:
            await asyncio.sleep(DRIFT_PUBLISH_S)
            if self._state is not None:
                try:
                    await self._drift_report(self._state)
                except Exception as exc:  # the gauges must never take the replica down
                    log_event("drift_publish_failed", deployment=self.name, error=f"{type(exc).__name__}: {exc}")

    def _observe(self, state: ModelState, method: str, *args: Any) -> None:
        monitor = state.extra.get("monitor")
        if monitor is None:
            return
        try:
            getattr(monitor, method)(*args)
        except Exception as exc:  # monitoring must never fail a request; say so once
            if not self._observe_failed:
                self._observe_failed = True
                log_event("drift_observe_failed", deployment=self.name, error=f"{type(exc).__name__}: {exc}")

    # ----------------------------------------------------------------- batching

    async def _run(self, jobs: list[tuple[ModelState, Any]]) -> list[Any]:
        if self.offload_compute:
            return await asyncio.to_thread(run_jobs, jobs)
        await asyncio.sleep(0)  # yield once, so callers looping on this replica cannot starve the loop
        return run_jobs(jobs)

    async def _predict(self, state: ModelState, job: Any) -> Any:
        """One job through the batch queue, or straight to the model when batching is off (size 1)."""
        if self._settings is not None and self._settings.max_batch_size == 1:
            self._metrics.batch(self.name, 1)
            return (await self._run([(state, job)]))[0]
        return await self._batcher.submit((state, job))

    def _current(self, task: str) -> ModelState:
        if self.task != task:
            raise RuntimeError(f"{self.name} serves {self.task}, not {task}")
        state = self._state
        if state is None:
            raise RuntimeError(f"{self.name}: no model loaded yet" + (f" ({self._last_error})" if self._last_error else ""))
        return state

    async def _explained(self, state: ModelState, req: dict[str, Any]) -> dict[str, Any]:
        """An ``explain`` request (it carries the ingress's max_explain_* limits): off the batcher, since
        one explanation is a batch of its own; a model that cannot explain is an error answer (422)."""
        asked = req["explain"]
        try:
            answer, observed = await asyncio.to_thread(explain_request, state, req, dict(asked) if isinstance(asked, dict) else {})
        except Rejected as exc:
            return {"error": exc.to_dict()}
        self._observe(state, state.task, *observed)
        return answer

    # ----------------------------------------------------------------- request methods (called through handles)

    async def recommend(self, req: dict[str, Any]) -> dict[str, Any]:
        """A ``RecommendRequest`` dict whose history the ingress resolved -> the answer dict,
        or ``{"error": {loc, msg, type}}`` for input only the model can judge (unknown category)."""
        state = self._current("recommend")
        if req.get("explain"):
            return await self._explained(state, req)
        try:
            job, context = plan_recommend(state, req)
        except Rejected as exc:
            return {"error": exc.to_dict()}
        row = None if job is None else await self._predict(state, job)
        self._observe(state, "recommend", len(req.get("history") or []), job, row)
        return finish_recommend(state, context, row)

    async def unknown_items(self, req: dict[str, Any]) -> dict[str, Any]:
        """``{"items": [...]}`` -> ``{"unknown": [...]}``: the ones the served recommender has no id for."""
        vocab = self._current("recommend").extra["vocab"]
        return {"unknown": [i for i in req.get("items") or [] if vocab.id_of(i) is None]}

    async def forecast(self, req: dict[str, Any]) -> dict[str, Any]:
        """A ``DemandRequest`` dict -> forecasts for every item (cold-start ones flagged), or
        ``{"error": ...}`` for a horizon beyond the model's."""
        state = self._current("demand")
        if req.get("explain"):
            return await self._explained(state, req)
        req = {**req, "horizon": demand_horizon(state, req.get("horizon"))}  # unset: the model's own
        try:
            job = demand_job(state, req)
        except Rejected as exc:
            return {"error": exc.to_dict()}
        answer = await self._predict(state, job)
        self._observe(state, "demand", req, answer)
        return finish_demand(state, req, answer)

    async def score(self, req: dict[str, Any]) -> dict[str, Any]:
        """A ``RiskRequest`` dict -> a probability and a decision per order (with ``explain``: per line, why)."""
        state = self._current("risk")
        if req.get("explain"):
            return await self._explained(state, req)
        orders = risk_job(req)
        probs = await self._predict(state, orders)
        self._observe(state, "risk", orders, probs)
        return finish_risk(state, orders, probs)


@serve.deployment(name="Recommender", ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=64)
class Recommender(_ModelServer):
    """One recommend version (``user_config.version``), batched."""

    TASK = "recommend"


@serve.deployment(name="DemandForecaster", ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=64)
class DemandForecaster(_ModelServer):
    """One demand version (``user_config.version``), batched."""

    TASK = "demand"


@serve.deployment(name="RiskScorer", ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=64)
class RiskScorer(_ModelServer):
    """One risk version (``user_config.version``), batched."""

    TASK = "risk"


@serve.deployment(name="Ensemble", ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=64)
class Ensemble(_ModelServer):
    """``user_config.members`` of one task (bind-time arg ``task``), combined by weighted mean."""

    ENSEMBLE = True


_SINGLE = {"recommend": Recommender, "demand": DemandForecaster, "risk": RiskScorer}


def model_deployment(task: str, ensemble: bool):
    """The deployment class that serves ``task`` (one version, or an ensemble)."""
    return Ensemble if ensemble else _SINGLE[task]
