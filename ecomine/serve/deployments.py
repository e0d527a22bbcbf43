"""Model deployments: Recommender, DemandForecaster, RiskScorer, and Ensemble.

Sits in ``ecomine.serve`` under the ingress: each deployment serves one arm of
a task. It fetches its version(s) from the registry (by id, stage or
``latest``; local or s3://, every sha256 verified), loads them with the task's
loader, and answers through ``@serve.batch`` (size and wait from its
``user_config``). ``reconfigure(user_config)`` swaps the model in place: the
new version is loaded beside the old one, then one reference flips, so
requests in flight finish on the old model and none fail.

``Recommender`` / ``DemandForecaster`` / ``RiskScorer`` serve one version
(``user_config.version``). ``Ensemble`` serves ``user_config.members`` of one
task in the same replica and combines them by weighted mean: of softmax
probabilities over the catalogue (recommend; members must share the item
vocabulary), of quantiles (demand), of probabilities (risk).

Loader protocol (``TaskArgs.loader``, default ``config.DEFAULT_LOADERS``): a
function ``load(folder: Path)`` of a verified version folder returning

- recommend: ``(model, vocab)``: ``model.score(histories: list[np.ndarray]) -> [B, n_items + 1]``
  logits (id 0 padding), ``vocab`` an ``ItemVocab``; ``popular.json`` in the folder
  gives the fallback order.
- demand: an object with ``forecast(item_ids: list[str], horizon: int, quantiles: list[float])
  -> array [n_items, n_quantiles, horizon]``; optional ``known_items(item_ids) -> list[bool]``
  (False: the answer is a cold-start profile, flagged ``fallback``) and ``freq`` ("1d" | "1w").
- risk: an object with ``score(orders: list[dict]) -> array [n_orders]`` of probabilities
  (each order: order_id, user_id, ts, country, lines[item_id, quantity, price]) and
  ``threshold: float``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from ray import serve

from ecomine.serve.config import DEFAULT_LOADERS, ModelSettings
from ecomine.serve.observability import ServeMetrics, log_event
from ecomine.serve.ranking import FALLBACK_REASONS, Catalogue, Rejected, combine, popular_fill, softmax_rows, top_k

__all__ = [
    "ModelLoadError",
    "import_loader",
    "Recommender",
    "DemandForecaster",
    "RiskScorer",
    "Ensemble",
    "model_deployment",
]


class ModelLoadError(RuntimeError):
    """A version could not be resolved, fetched, verified or loaded; the message names which."""


def import_loader(path: str, task: str) -> Callable[[Path], Any]:
    """``package.module:function`` -> the function, with an error that says what is missing."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = (
            f" (the {task} model module has not landed yet, or set {task}.loader)"
            if path == DEFAULT_LOADERS.get(task)
            else ""
        )
        raise ModelLoadError(f"{task}: loader {path!r} is not importable: {exc}{hint}") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ModelLoadError(f"{task}: loader {path!r}: {module_name} has no function {attr!r}")
    return fn


@dataclass
class _Member:
    version: str
    ref: str
    weight: float
    created_at: datetime | None
    stages: list[str]
    obj: Any
    spec: dict[str, Any] = field(default_factory=dict)  # the spec that trained it (manifest)


@dataclass
class _State:
    """One immutable snapshot of what a replica serves; a swap replaces the whole object."""

    task: str
    members: list[_Member]
    weights: list[float]
    label: str
    loaded_at: datetime
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def versions(self) -> list[str]:
        return [m.version for m in self.members]


# --------------------------------------------------------------------------- per-task model logic


def _prepare_recommend(members: list[_Member], folders: list[Path], catalogue_table: Any) -> dict[str, Any]:
    vocabs = []
    for m in members:
        if not (isinstance(m.obj, tuple) and len(m.obj) == 2 and hasattr(m.obj[0], "score")):
            raise ModelLoadError(f"recommend/{m.version}: the loader must return (model, vocab)")
        vocabs.append(m.obj[1])
    first = vocabs[0]
    for m, vocab in zip(members[1:], vocabs[1:]):
        if list(vocab.items) != list(first.items):
            raise ModelLoadError(
                f"ensemble members recommend/{members[0].version} ({len(first.items)} items) and "
                f"recommend/{m.version} ({len(vocab.items)} items) have different item vocabularies; "
                "members of a recommend ensemble must share one (train them on the same catalogue)"
            )
    popular_path = folders[0] / "popular.json"
    popular = np.array(json.loads(popular_path.read_text()).get("items", []) if popular_path.exists() else [], dtype=np.int64)
    popular = popular[(popular >= 1) & (popular <= len(first.items))]
    spec = members[0].spec
    return {
        "vocab": first,
        "catalogue": Catalogue.build(list(first.items), list(first.texts or []), catalogue_table),
        "popular": popular,
        "exclude_history": bool(spec.get("model", {}).get("exclude_history", False)) if isinstance(spec, dict) else False,
    }


def _run_recommend(state: _State, histories: list[np.ndarray]) -> list[np.ndarray]:
    probs = []
    for m in state.members:
        logits = np.asarray(m.obj[0].score(histories))
        probs.append(softmax_rows(logits))
    combined = combine(probs, state.weights) if len(probs) > 1 else probs[0]
    return [combined[i] for i in range(len(histories))]


def _run_demand(state: _State, jobs: list[tuple[list[str], int, list[float]]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any] | None] = [None] * len(jobs)
    groups: dict[tuple[int, tuple[float, ...]], list[int]] = {}
    for j, (_, horizon, qs) in enumerate(jobs):
        groups.setdefault((horizon, tuple(qs)), []).append(j)
    for (horizon, qs), idx in groups.items():
        items = [item for j in idx for item in jobs[j][0]]
        arrays, known = [], np.ones(len(items), dtype=bool)
        for m in state.members:
            arr = np.asarray(m.obj.forecast(items, horizon, list(qs)), dtype=np.float64)
            if arr.shape != (len(items), len(qs), horizon):
                raise ModelLoadError(
                    f"demand/{m.version}: forecast returned shape {arr.shape}, expected {(len(items), len(qs), horizon)}"
                )
            arrays.append(arr)
            if hasattr(m.obj, "known_items"):
                known &= np.asarray(m.obj.known_items(items), dtype=bool)
        w = np.asarray(state.weights)[:, None, None, None]
        mean = (np.stack(arrays) * w).sum(axis=0) if len(arrays) > 1 else arrays[0]
        mean = np.sort(mean, axis=1)  # a weighted mean of quantiles can cross; keep them ordered
        start = 0
        for j in idx:
            n = len(jobs[j][0])
            out[j] = {
                "forecasts": [
                    {"item_id": item, "values": mean[start + r].tolist(), "fallback": not bool(known[start + r])}
                    for r, item in enumerate(jobs[j][0])
                ],
            }
            start += n
    return out  # type: ignore[return-value]


def _run_risk(state: _State, jobs: list[list[dict[str, Any]]]) -> list[list[float]]:
    orders = [o for job in jobs for o in job]
    probs = []
    for m in state.members:
        p = np.asarray(m.obj.score(orders), dtype=np.float64).reshape(-1)
        if p.shape[0] != len(orders):
            raise ModelLoadError(f"risk/{m.version}: score returned {p.shape[0]} values for {len(orders)} orders")
        probs.append(np.clip(p, 0.0, 1.0))
    mean = sum(p * w for p, w in zip(probs, state.weights)) if len(probs) > 1 else probs[0]
    out, start = [], 0
    for job in jobs:
        out.append(mean[start : start + len(job)].tolist())
        start += len(job)
    return out


_RUNNERS: dict[str, Callable[[_State, list[Any]], list[Any]]] = {
    "recommend": _run_recommend,
    "demand": _run_demand,
    "risk": _run_risk,
}


def _run_jobs(jobs: list[tuple[_State, Any]]) -> list[Any]:
    """Run one batch: jobs that share a model snapshot run together (a swap can split a batch)."""
    results: list[Any] = [None] * len(jobs)
    by_state: dict[int, list[int]] = {}
    for i, (state, _) in enumerate(jobs):
        by_state.setdefault(id(state), []).append(i)
    for idx in by_state.values():
        state = jobs[idx[0]][0]
        answers = _RUNNERS[state.task](state, [jobs[i][1] for i in idx])
        for i, answer in zip(idx, answers):
            results[i] = answer
    return results


# --------------------------------------------------------------------------- the deployment class


class _ModelServer:
    """Shared body of every model deployment; subclasses fix the task and single/ensemble."""

    TASK: str | None = None
    ENSEMBLE: bool = False

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
    ) -> None:
        from ecomine.registry import Registry
        from ecomine.storage import S3Options

        self.task = self.TASK or task
        if self.task not in _RUNNERS:
            raise ValueError(f"{name}: task must be one of {sorted(_RUNNERS)}, got {task!r}")
        self.name = name
        self.registry = Registry(registry, s3=S3Options(**s3) if s3 else None)
        self.loader_path = loader or DEFAULT_LOADERS[self.task]
        self.catalogue_uri = catalogue_uri
        self.threshold = threshold
        self._catalogue_table: Any = None
        self._state: _State | None = None
        self._settings: ModelSettings | None = None
        self._lock = asyncio.Lock()
        self._metrics = ServeMetrics()
        self._last_error: str | None = None

    # ----------------------------------------------------------------- configuration and swap

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply a ``ModelSettings``: batching at once; a new version set is loaded, then swapped in."""
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
        self._infer.set_max_batch_size(settings.max_batch_size)
        self._infer.set_batch_wait_timeout_s(settings.batch_wait_timeout_s)
        async with self._lock:
            refs = [(m.version, m.weight) for m in settings.refs()]
            try:
                state = await asyncio.to_thread(self._load, refs)
            except Exception as exc:
                self._last_error = f"{type(exc).__name__}: {exc}"
                log_event("model_load_failed", deployment=self.name, error=self._last_error)
                raise
            previous = self._state
            self._state = state  # the swap: one reference; requests in flight keep their snapshot
            self._settings = settings
            self._last_error = None
        if previous is None or previous.versions != state.versions or previous.weights != state.weights:
            if previous is not None:
                self._metrics.swap(self.name)
            log_event(
                "model_swap" if previous is not None else "model_loaded",
                deployment=self.name, model=state.label,
                previous=previous.label if previous is not None else None,
            )

    def _load(self, refs: list[tuple[str, float]]) -> _State:
        """Resolve, fetch (verifying every sha256) and load each member; reuse members already loaded."""
        current = {m.version: m for m in (self._state.members if self._state else [])}
        members, folders = [], []
        loader = None
        for ref, weight in refs:
            try:
                mv = self.registry.get(self.task, ref)
            except Exception as exc:
                raise ModelLoadError(f"{self.name}: cannot resolve {self.task} version {ref!r}: {exc}") from exc
            folder = self.registry.fetch(self.task, mv.version)  # raises ChecksumMismatch on any difference
            folders.append(folder)
            if mv.version in current:
                obj = current[mv.version].obj
            else:
                loader = loader or import_loader(self.loader_path, self.task)
                try:
                    obj = loader(folder)
                except Exception as exc:
                    raise ModelLoadError(f"{self.name}: loading {self.task}/{mv.version} failed: {exc}") from exc
            members.append(_Member(mv.version, ref, weight, mv.created_at, list(mv.stages), obj, dict(mv.spec)))
        total = sum(m.weight for m in members)
        weights = [m.weight / total for m in members]
        if len(members) == 1:
            label = f"{self.task}/{members[0].version}"
        else:
            label = "ensemble(" + "+".join(f"{self.task}/{m.version}*{w:.2f}" for m, w in zip(members, weights)) + ")"
        extra: dict[str, Any] = {}
        if self.task == "recommend":
            if self.catalogue_uri and self._catalogue_table is None:
                from ecomine import storage

                self._catalogue_table = storage.read_parquet(self.catalogue_uri, options=self.registry.s3)
                if "item_id" not in self._catalogue_table.columns:
                    raise ModelLoadError(f"{self.name}: catalogue {self.catalogue_uri} has no item_id column")
            extra = _prepare_recommend(members, folders, self._catalogue_table)
        elif self.task == "demand":
            extra = {"freq": getattr(members[0].obj, "freq", None)}
        elif self.task == "risk":
            if self.threshold is not None:
                thr = self.threshold
            else:
                thr = float(sum(w * float(getattr(m.obj, "threshold", 0.5)) for m, w in zip(members, weights)))
            extra = {"threshold": thr}
        return _State(self.task, members, weights, label, datetime.now(timezone.utc), extra)

    async def check_health(self) -> None:
        if self._state is None:
            raise RuntimeError(f"{self.name}: no model loaded" + (f" ({self._last_error})" if self._last_error else ""))

    async def info(self) -> dict[str, Any]:
        """What this replica serves (the ``ArmInfo`` of ``GET /v1/models``)."""
        state, settings = self._state, self._settings
        if state is None:
            return {"deployment": self.name, "kind": "ensemble" if self.ENSEMBLE else "single",
                    "status": "unavailable", "detail": self._last_error or "loading"}
        return {
            "deployment": self.name,
            "kind": "ensemble" if self.ENSEMBLE else "single",
            "status": "ok",
            "detail": self._last_error,
            "model": state.label,
            "members": [
                {"version": m.version, "ref": m.ref, "weight": w, "created_at": m.created_at, "stages": m.stages}
                for m, w in zip(state.members, state.weights)
            ],
            "loaded_at": state.loaded_at,
            "max_batch_size": settings.max_batch_size if settings else None,
            "batch_wait_timeout_s": settings.batch_wait_timeout_s if settings else None,
        }

    # ----------------------------------------------------------------- batching

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def _infer(self, jobs: list[tuple[_State, Any]]) -> list[Any]:
        self._metrics.batch(self.name, len(jobs))
        return await asyncio.to_thread(_run_jobs, jobs)

    async def _predict(self, state: _State, job: Any) -> Any:
        """One job through the batch queue, or straight to the model when batching is off (size 1)."""
        if self._settings is not None and self._settings.max_batch_size == 1:
            self._metrics.batch(self.name, 1)
            return (await asyncio.to_thread(_run_jobs, [(state, job)]))[0]
        return await self._infer((state, job))

    def _current(self) -> _State:
        state = self._state
        if state is None:
            raise RuntimeError(f"{self.name}: no model loaded yet" + (f" ({self._last_error})" if self._last_error else ""))
        return state

    def _need(self, task: str) -> None:
        if self.task != task:
            raise RuntimeError(f"{self.name} serves {self.task}, not {task}")

    # ----------------------------------------------------------------- request methods (called through handles)

    async def recommend(self, req: dict[str, Any]) -> dict[str, Any]:
        """One recommendation request; ``req`` is a ``RecommendRequest`` dict with the history resolved
        by the ingress (``history``: list of item ids) and ``fallback_reason`` set when it has none."""
        self._need("recommend")
        state = self._current()
        x = state.extra
        vocab, catalogue = x["vocab"], x["catalogue"]
        history = req.get("history") or []
        ids = vocab.encode(history)
        unknown = list(dict.fromkeys(h for h in history if vocab.id_of(h) is None))[:100]
        exclude_history = req.get("exclude_history")
        if exclude_history is None:
            exclude_history = x["exclude_history"]
        banned_parts = [vocab.encode(req.get("exclude") or [])]
        if exclude_history:
            banned_parts.append(ids)
        banned = np.unique(np.concatenate(banned_parts)) if banned_parts else None
        try:
            allowed = catalogue.allowed(req.get("categories"))
        except Rejected as exc:
            return {"error": exc.to_dict()}
        k = int(req.get("k", 10))
        reason = req.get("fallback_reason")
        if reason is None and len(ids) == 0:
            reason = "empty_history" if not history else "no_known_items"
        if reason is not None:
            chosen, scores = popular_fill(x["popular"], k, banned=banned, allowed=allowed)
        else:
            row = await self._predict(state, ids)
            chosen, scores = top_k(row, k, banned=banned, allowed=allowed)
        items = [
            {"item_id": vocab.items[i - 1], "score": float(s), **catalogue.describe(int(i))}
            for i, s in zip(chosen.tolist(), scores.tolist())
        ]
        return {
            "items": items,
            "model": state.label,
            "versions": state.versions,
            "fallback": reason is not None,
            "fallback_code": reason,
            "fallback_reason": FALLBACK_REASONS.get(reason) if reason else None,
            "unknown_items": unknown,
        }

    async def forecast(self, req: dict[str, Any]) -> dict[str, Any]:
        """One ``DemandRequest`` dict -> forecasts for every item (cold-start ones flagged)."""
        self._need("demand")
        state = self._current()
        answer = await self._predict(state, (list(req["item_ids"]), int(req["horizon"]), list(req["quantiles"])))
        return {
            **answer,
            "quantiles": list(req["quantiles"]),
            "horizon": int(req["horizon"]),
            "freq": state.extra.get("freq"),
            "model": state.label,
            "versions": state.versions,
            "fallback": any(f["fallback"] for f in answer["forecasts"]),
        }

    async def score(self, req: dict[str, Any]) -> dict[str, Any]:
        """One ``RiskRequest`` dict -> a probability and a decision per order."""
        self._need("risk")
        state = self._current()
        orders = list(req["orders"])
        probs = await self._predict(state, orders)
        thr = float(state.extra["threshold"])
        return {
            "results": [
                {"order_id": o.get("order_id"), "probability": p, "flagged": p >= thr, "threshold": thr}
                for o, p in zip(orders, probs)
            ],
            "model": state.label,
            "versions": state.versions,
        }


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
    """``user_config.members`` of one task (init arg ``task``), combined by weighted mean."""

    ENSEMBLE = True


_SINGLE = {"recommend": Recommender, "demand": DemandForecaster, "risk": RiskScorer}


def model_deployment(task: str, ensemble: bool):
    """The deployment class that serves ``task`` (one version, or an ensemble)."""
    return Ensemble if ensemble else _SINGLE[task]
