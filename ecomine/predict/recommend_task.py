"""Recommend, as served: what a loaded recommend version holds, how a batch is scored and explained.

Sits in ``ecomine.predict`` under ``tasks`` (which registers it as the recommend ``PredictTask``)
and over ``state``, ``answers``, ``ranking`` and ``combine``. Members are ``(model, vocab)``
(the loader protocol in ``runtime``); an ensemble mixes their softmax probabilities over one
shared catalogue; an explanation is occlusion over the history, which for a mixture is the
members' occlusions weighted.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ecomine.predict import combine as ensemble_math
from ecomine.predict.answers import finish_recommend, plan_recommend
from ecomine.predict.ranking import ItemCatalogue
from ecomine.predict.state import ExplainLimits, Member, ModelLoadError, ModelState, explain_limit, torch_device

__all__ = ["LOADER", "prepare", "run", "explainable", "explain", "explain_recommend", "agreement", "brief", "offline"]

LOADER = "ecomine.models.recommend:load_recommender"


def prepare(members: list[Member], catalogue: Any = None, threshold: float | None = None) -> dict[str, Any]:
    """Members share one vocabulary; the catalogue, the fallback order and the device they score on."""
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


_MEMBER_POOL: list[Any] = []  # created on the first ensemble batch, never at import


def _member_probs(state: ModelState, m: Member, histories: list[np.ndarray]) -> np.ndarray:
    logits = np.asarray(m.obj[0].score(histories, device=state.extra["device"]))
    return ensemble_math.softmax_rows(logits, m.temperature)


def run(state: ModelState, histories: list[np.ndarray]) -> list[np.ndarray]:
    """One batch of encoded histories -> one row of mixed probabilities over the catalogue each."""
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


def explainable(member: Member) -> str | None:
    """None when the member's model can be occluded, else why not (the popularity baseline cannot)."""
    from ecomine.models.recommend_explain import history_explainable

    return history_explainable(member.obj[0])


def explain(state: ModelState, req: dict[str, Any], limits: ExplainLimits) -> tuple[dict[str, Any], tuple]:
    """A request -> (the answer with ``because`` per item, the drift monitor's arguments)."""
    job, context = plan_recommend(state, req)
    answer, row = explain_recommend(state, context, job, limits)
    return answer, (len(req.get("history") or []), job, row)


def _window(state: ModelState) -> int | None:
    """The longest history window any member reads (None: a baseline reads all of it)."""
    lens = [getattr(getattr(m.obj[0], "config", None), "max_len", None) for m in state.members]
    return None if any(n is None for n in lens) else max(int(n) for n in lens)


def explain_recommend(state: ModelState, context: dict[str, Any], ids: np.ndarray | None,
                      limits: ExplainLimits) -> tuple[dict[str, Any], np.ndarray | None]:
    """The recommend answer with ``because`` on its first ``max_explain_items`` items, and the score row.

    The whole history and every occluded one are scored in one ``run_jobs`` batch (each
    member one forward pass), so the answer's scores are those the contributions subtract from.
    """
    from ecomine.models.recommend_explain import history_contributions, occlusion_histories

    if ids is None:  # a fallback answer: popular items, nothing in a history to point at
        answer = finish_recommend(state, context, None)
        return {**answer, "explanation": "a fallback answer (popular items): no history to explain it by"}, None
    window = _window(state) or len(ids)
    distinct, occluded = occlusion_histories(ids, max_len=window, max_items=explain_limit(limits, "max_explain_history"))
    rows = run(state, [ids, *occluded])
    answer = finish_recommend(state, context, rows[0])
    vocab, catalogue = state.extra["vocab"], state.extra["catalogue"]
    n = min(len(answer["items"]), explain_limit(limits, "max_explain_items"))
    chosen = np.array([vocab.id_of(it["item_id"]) for it in answer["items"][:n]], dtype=np.int64)
    occ = np.stack(rows[1:]) if len(rows) > 1 else np.zeros((0, len(rows[0])))
    found = history_contributions(rows[0], occ, chosen, distinct, top=explain_limit(limits, "max_explain_contributors"))
    items = [dict(it) for it in answer["items"]]
    for it, because in zip(items, found):
        it["because"] = [
            {"item_id": vocab.items[h - 1], "contribution": c, "title": catalogue.describe(h).get("title")}
            for h, c in because
        ]
    tried = len(distinct)
    note = (f"occlusion: each contribution is the item's score minus its score with that history item removed "
            f"({tried} most recent distinct history item{'s' if tried != 1 else ''} tried, top {n} items explained)")
    if len(state.members) > 1:
        note += "; the ensemble's weighted mixture, i.e. its members' contributions weighted"
    return {**answer, "items": items, "explanation": note}, rows[0]


def offline(payload: dict[str, Any]) -> dict[str, Any]:
    """A request answered without Serve: it must carry the history (no users table here); no fallback reason."""
    if payload.get("history") is None:
        raise ValueError("history: offline explain needs the history itself (no users table here)")
    return {**payload, "fallback_reason": None}


def agreement(champion: dict[str, Any], challenger: dict[str, Any]) -> float | None:
    """Overlap of the top-k item sets, |A ∩ B| / max(|A|, |B|); 1.0 when both are empty."""
    a = [i["item_id"] for i in champion.get("items", [])]
    b = [i["item_id"] for i in challenger.get("items", [])]
    if not a and not b:
        return 1.0
    return len(set(a) & set(b)) / max(len(a), len(b))


def brief(answer: dict[str, Any]) -> list[Any]:
    """The top item ids."""
    return [i["item_id"] for i in answer.get("items", [])]
