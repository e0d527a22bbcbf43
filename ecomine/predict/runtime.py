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
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ecomine.predict.state import Member, ModelLoadError, ModelState
from ecomine.predict.tasks import PREDICT_TASKS, predict_task

__all__ = ["DEFAULT_LOADERS", "import_loader", "load_state", "expand_ensembles", "build_state", "run_jobs"]

# module:function that turns a verified version folder into a model (the loader protocol above).
DEFAULT_LOADERS = {name: task.loader for name, task in PREDICT_TASKS.items()}


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
    adopt = predict_task(task).adopt_ensemble
    if adopt is not None and len(refs) == 1 and ensembles:
        adopt(state, ensembles[0], threshold)  # what the ensemble version fitted on its mixture (risk: recalibration)
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
    contract = predict_task(task)
    total = sum(m.weight for m in members)
    weights = [m.weight / total for m in members]
    if len(members) == 1:
        label = f"{task}/{members[0].version}"
    else:
        label = "ensemble(" + "+".join(f"{task}/{m.version}*{w:.2f}" for m, w in zip(members, weights)) + ")"
    extra = contract.prepare(members, catalogue, threshold)
    return ModelState(task, members, weights, label, datetime.now(timezone.utc), extra)


def run_jobs(jobs: list[tuple[ModelState, Any]]) -> list[Any]:
    """Run one batch of ``(state, job)``: jobs that share a snapshot run together (a swap can split a batch)."""
    results: list[Any] = [None] * len(jobs)
    by_state: dict[int, list[int]] = {}
    for i, (state, _) in enumerate(jobs):
        by_state.setdefault(id(state), []).append(i)
    for idx in by_state.values():
        state = jobs[idx[0]][0]
        answers = predict_task(state.task).run(state, [jobs[i][1] for i in idx])
        for i, answer in zip(idx, answers):
            results[i] = answer
    return results
