"""What a model deployment holds and computes, without Ray: loaded versions and per-task answers.

Sits in ``ecomine.predict``, under ``serve.deployments`` (which wraps it in Serve
replicas with batching and in-place swaps), batch scoring and the retrain holdout. It resolves and fetches versions
from the registry (every sha256 verified), loads them with the task's loader,
checks that an ensemble's members fit together, and turns requests into
answers: one batch of jobs at a time (``run_jobs``); ``predict.answers`` turns a
request into a job and a job's result into the answer. Ray-free, so it runs in unit tests and on any
machine with torch.

Loader protocol (``TaskArgs.loader``, default ``DEFAULT_LOADERS`` below): a
function ``load(folder: Path)`` of a verified version folder returning

- recommend: ``(model, vocab)``: a torch module with ``score(histories: list[np.ndarray], device=...)
  -> [B, n_items + 1]`` logits (id 0 padding), ``vocab`` an ``ItemVocab``; ``popular.json`` in the
  folder gives the fallback order. When torch sees a GPU (Ray shows one only to replicas that
  asked for it) the models move there.
- demand: an object with ``forecast(item_ids: list[str], horizon: int, quantiles: list[float])
  -> array [n_items, n_quantiles, horizon]``; optional ``known_items(item_ids) -> list[bool]``
  (False: the answer is a cold-start profile, flagged ``fallback``) and ``freq`` ("1d" | "1w").
- risk: an object with ``score(orders: list[dict]) -> array [n_orders]`` of probabilities
  (each order: order_id, user_id, ts, country, lines[item_id, quantity, price]) and
  ``threshold: float``.

Ensembles combine members by weighted mean: of softmax probabilities over the
catalogue (recommend; members must share the item vocabulary), of quantiles
(demand, re-sorted so they never cross), of probabilities (risk).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ecomine.predict import combine as ensemble_math
from ecomine.predict.ranking import ItemCatalogue

__all__ = [
    "expand_ensembles",
    "TASKS",
    "DEFAULT_LOADERS",
    "ModelLoadError",
    "reconfigure_failure",
    "Member",
    "ModelState",
    "import_loader",
    "torch_device",
    "load_state",
    "build_state",
    "run_jobs",
]

TASKS = ("recommend", "demand", "risk")
# module:function that turns a verified version folder into a model (the loader protocol above).
DEFAULT_LOADERS = {
    "recommend": "ecomine.models.recommend:load_recommender",
    "demand": "ecomine.models.demand:load_forecaster",
    "risk": "ecomine.models.risk:load_risk_model",
}


class ModelLoadError(RuntimeError):
    """A version could not be resolved, fetched, verified or loaded; the message names which."""


def reconfigure_failure(user_config: Any, exc: BaseException) -> dict[str, Any]:
    """What a refused ``user_config`` is reported as: ``{version, file, reason, at}``.

    ``version`` is what the config asked for (a ref, or an ensemble's refs joined by ``+``);
    ``file`` the version file that failed its check (a ``ChecksumMismatch`` anywhere in the
    cause chain), else None; ``reason`` the error on one line.
    """
    version = None
    if isinstance(user_config, dict):
        if isinstance(user_config.get("version"), str):
            version = user_config["version"]
        elif isinstance(user_config.get("members"), list):
            refs = [str(m.get("version")) for m in user_config["members"] if isinstance(m, dict)]
            version = "+".join(refs) or None
    file, seen, cur = None, set(), exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(getattr(cur, "file", None), str):
            file = cur.file
            break
        cur = cur.__cause__ or cur.__context__
    reason = " ".join(f"{type(exc).__name__}: {exc}".split())
    return {"version": version, "file": file, "reason": reason[:600],
            "at": datetime.now(timezone.utc).isoformat()}


@dataclass
class Member:
    """One loaded version of an ensemble (or the only one)."""

    version: str
    ref: str
    weight: float
    created_at: datetime | None
    stages: list[str]
    obj: Any
    spec: dict[str, Any] = field(default_factory=dict)  # the spec that trained it (manifest)
    folder: Path | None = None
    temperature: float = 1.0  # recommend: softmax(temperature * scores), fitted by `ecomine ensemble build`


@dataclass
class ModelState:
    """One immutable snapshot of what a replica serves; a swap replaces the whole object."""

    task: str
    members: list[Member]
    weights: list[float]
    label: str
    loaded_at: datetime
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def versions(self) -> list[str]:
        return [m.version for m in self.members]


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


def torch_device() -> str:
    """``cuda`` when torch sees a GPU here, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# --------------------------------------------------------------------------- loading


def load_state(
    registry: Any,
    task: str,
    refs: list[tuple[str, float]],
    *,
    loader_path: str | None = None,
    current: ModelState | None = None,
    catalogue: Any = None,
    threshold: float | None = None,
    name: str = "",
) -> ModelState:
    """Resolve each ``(ref, weight)`` in ``registry``, fetch it (sha256-verified) and load it.

    Members already loaded in ``current`` are reused. ``catalogue`` is a polars table
    for recommend (item_id + optional category/item_text/median_price).
    """
    label = name or task
    known = {m.version: m for m in (current.members if current else [])}
    members: list[Member] = []
    loader = None
    entries, ensembles = expand_ensembles(registry, task, refs, label)
    for mv, ref, weight, temperature in entries:
        folder = registry.fetch(task, mv.version)  # raises ChecksumMismatch on any difference
        if mv.version in known:
            obj = known[mv.version].obj
        else:
            if loader is None:
                loader = import_loader(loader_path or DEFAULT_LOADERS[task], task)
            try:
                obj = loader(folder)
            except Exception as exc:
                raise ModelLoadError(f"{label}: loading {task}/{mv.version} failed: {exc}") from exc
        members.append(Member(mv.version, ref, weight, mv.created_at, list(mv.stages), obj, dict(mv.spec), folder,
                              temperature))
    state = build_state(task, members, catalogue=catalogue, threshold=threshold)
    if task == "risk" and len(refs) == 1 and ensembles:
        # a risk ensemble version carries its mixture's recalibration and the threshold chosen on it
        state.extra["recalibration"] = ensembles[0].recalibration
        if threshold is None and ensembles[0].threshold is not None:
            state.extra["threshold"] = float(ensembles[0].threshold)
    return state


def expand_ensembles(registry: Any, task: str, refs: list[tuple[str, float]], label: str) -> tuple[list, list]:
    """``(version, ref, weight, temperature)`` per model - a version of kind ensemble becomes its pinned members -
    and the ensemble manifests met on the way."""
    from ecomine.registry import is_ensemble, pinned_members, read_ensemble

    out, ensembles = [], []
    for ref, weight in refs:
        try:
            mv = registry.get(task, ref)
        except Exception as exc:
            raise ModelLoadError(f"{label}: cannot resolve {task} version {ref!r}: {exc}") from exc
        if not is_ensemble(mv):
            out.append((mv, ref, weight, 1.0))
            continue
        ensemble = read_ensemble(registry.fetch(task, mv.version))  # ensemble.json verified like any file
        members = pinned_members(registry, task, mv.version, ensemble)  # a changed member raises ChecksumMismatch
        ensembles.append(ensemble)
        for pin, member in zip(ensemble.members, members):
            out.append((member, f"{ref} (ensemble {mv.version})", weight * pin.weight, pin.temperature))
    return out, ensembles


def build_state(task: str, members: list[Member], *, catalogue: Any = None, threshold: float | None = None) -> ModelState:
    """A ``ModelState`` from loaded members: weights normalised, task extras prepared and checked."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    total = sum(m.weight for m in members)
    weights = [m.weight / total for m in members]
    if len(members) == 1:
        label = f"{task}/{members[0].version}"
    else:
        label = "ensemble(" + "+".join(f"{task}/{m.version}*{w:.2f}" for m, w in zip(members, weights)) + ")"
    extra: dict[str, Any]
    if task == "recommend":
        extra = _prepare_recommend(members, catalogue)
    elif task == "demand":
        freqs = {getattr(m.obj, "freq", None) for m in members}
        if len(freqs) > 1:
            raise ModelLoadError(f"demand ensemble members forecast different periods {sorted(map(str, freqs))}; use one freq")
        horizons = [int(m.obj.max_horizon) for m in members if getattr(m.obj, "max_horizon", None)]
        # the ensemble answers only horizons every member was trained for, and levels inside every member's range
        levels = [list(m.obj.quantiles) for m in members if getattr(m.obj, "quantiles", None)]
        extra = {"freq": freqs.pop(), "max_horizon": min(horizons) if horizons else None,
                 "quantile_range": (max(q[0] for q in levels), min(q[-1] for q in levels)) if levels else None}
    else:
        thr = threshold if threshold is not None else sum(
            w * float(getattr(m.obj, "threshold", 0.5)) for m, w in zip(members, weights)
        )
        extra = {"threshold": float(thr)}
    return ModelState(task, members, weights, label, datetime.now(timezone.utc), extra)


def _prepare_recommend(members: list[Member], catalogue: Any) -> dict[str, Any]:
    for m in members:
        if not (isinstance(m.obj, tuple) and len(m.obj) == 2 and hasattr(m.obj[0], "score")):
            raise ModelLoadError(f"recommend/{m.version}: the loader must return (model, vocab)")
    first = members[0].obj[1]
    for m in members[1:]:
        vocab = m.obj[1]
        if list(vocab.items) != list(first.items):
            raise ModelLoadError(
                f"ensemble members recommend/{members[0].version} ({len(first.items)} items) and "
                f"recommend/{m.version} ({len(vocab.items)} items) have different item vocabularies; "
                "members of a recommend ensemble must share one (train them on the same catalogue)"
            )
    device = torch_device() if hasattr(members[0].obj[0], "to") else "cpu"
    if device != "cpu":
        for m in members:
            m.obj[0].to(device)
    popular: list[int] = []
    folder = members[0].folder
    if folder is not None and (folder / "popular.json").exists():
        popular = json.loads((folder / "popular.json").read_text()).get("items", [])
    ids = np.array(popular, dtype=np.int64)
    ids = ids[(ids >= 1) & (ids <= len(first.items))]
    model_spec = members[0].spec.get("model") if isinstance(members[0].spec, dict) else None
    return {
        "vocab": first,
        "catalogue": ItemCatalogue.build(list(first.items), list(first.texts or []), catalogue),
        "popular": ids,
        "exclude_history": bool(model_spec.get("exclude_history", False)) if isinstance(model_spec, dict) else False,
        "device": device,
    }


# --------------------------------------------------------------------------- one batch


_MEMBER_POOL: list[Any] = []  # created on the first ensemble batch, never at import


def _member_probs(state: ModelState, m: Member, histories: list[np.ndarray]) -> np.ndarray:
    logits = np.asarray(m.obj[0].score(histories, device=state.extra["device"]))
    return ensemble_math.softmax_rows(logits, m.temperature)


def _run_recommend(state: ModelState, histories: list[np.ndarray]) -> list[np.ndarray]:
    if len(state.members) == 1:
        probs = [_member_probs(state, state.members[0], histories)]
    else:  # members side by side in threads (torch releases the GIL): a replica with one torch thread per
        # member uses every core it is given instead of scoring them one after the other
        if not _MEMBER_POOL:
            from concurrent.futures import ThreadPoolExecutor

            _MEMBER_POOL.append(ThreadPoolExecutor(max_workers=16, thread_name_prefix="ecomine-member"))
        probs = list(_MEMBER_POOL[0].map(lambda m: _member_probs(state, m, histories), state.members))
    combined = ensemble_math.mix(probs, state.weights) if len(probs) > 1 else probs[0]
    return [combined[i] for i in range(len(histories))]


def _run_demand(state: ModelState, jobs: list[tuple[list[str], int, list[float]]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{} for _ in jobs]
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
        # the weighted mean, quantiles re-sorted (a mean of quantiles can cross): the one the ensemble was fitted with
        mean = ensemble_math.combine_quantiles(arrays, state.weights, axis=1)
        start = 0
        for j in idx:
            out[j] = {
                "forecasts": [
                    {"item_id": item, "values": mean[start + r].tolist(), "fallback": not bool(known[start + r])}
                    for r, item in enumerate(jobs[j][0])
                ],
            }
            start += len(jobs[j][0])
    return out


def _run_risk(state: ModelState, jobs: list[list[dict[str, Any]]]) -> list[list[float]]:
    orders = [o for job in jobs for o in job]
    probs = []
    for m in state.members:
        p = np.asarray(m.obj.score(orders), dtype=np.float64).reshape(-1)
        if p.shape[0] != len(orders):
            raise ModelLoadError(f"risk/{m.version}: score returned {p.shape[0]} values for {len(orders)} orders")
        probs.append(np.clip(p, 0.0, 1.0))
    mean = ensemble_math.mix(probs, state.weights) if len(probs) > 1 else probs[0]
    if state.extra.get("recalibration"):
        mean = ensemble_math.apply_platt(mean, *state.extra["recalibration"])
    out, start = [], 0
    for job in jobs:
        out.append(mean[start : start + len(job)].tolist())
        start += len(job)
    return out


_RUNNERS: dict[str, Callable[[ModelState, list[Any]], list[Any]]] = {
    "recommend": _run_recommend,
    "demand": _run_demand,
    "risk": _run_risk,
}


def run_jobs(jobs: list[tuple[ModelState, Any]]) -> list[Any]:
    """Run one batch of ``(state, job)``: jobs that share a snapshot run together (a swap can split a batch)."""
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
