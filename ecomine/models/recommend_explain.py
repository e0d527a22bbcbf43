"""Why this item: occlusion of a recommendation's history ("because you bought X").

Sits in ``models`` beside the recommenders; ``ecomine.predict.explain`` runs it on a served
version or ensemble. A history item's contribution to a recommended item is the item's
score with the whole history minus its score with every occurrence of that history item
removed, the exact counterfactual a merchandiser asks about, and in the same units as the
answer's score.

Occlusion rather than integrated gradients over the item embeddings: it is exact (no
path integral, no baseline embedding to choose), it needs only the ``score(histories)``
every recommender has (the transformer, the masked-item BERT, item-kNN alike), and it
costs one batched forward pass of at most ``max_history`` rows, where integrated gradients
would cost a forward and a backward pass per step per item explained. Removing an item
lets an older one slide into the model's window, as it would had the user never bought it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["history_explainable", "occlusion_histories", "history_contributions"]


def history_explainable(model: object) -> str | None:
    """None when a recommender's scores depend on the history (occlusion can explain it), else why not."""
    kind = getattr(model, "kind", None)
    if kind == "most_popular":  # a BaselineRecommender that ranks everyone alike
        return "the popularity baseline ranks every user alike: no history item changes its scores"
    if not callable(getattr(model, "score", None)):
        return "it has no score(histories) to re-score a history with"
    return None


def occlusion_histories(ids: np.ndarray, *, max_len: int, max_items: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """The distinct items of the scored window (the last ``max_len`` ids), most recent first, at most
    ``max_items``; and for each, the whole history without any occurrence of it."""
    ids = np.asarray(ids, dtype=np.int64)
    window = ids[-max_len:][::-1]  # most recent first
    _, first = np.unique(window, return_index=True)
    distinct = window[np.sort(first)][:max_items]
    return distinct, [ids[ids != d] for d in distinct]


def history_contributions(full: np.ndarray, occluded: np.ndarray, chosen: np.ndarray, distinct: np.ndarray,
                          *, top: int) -> list[list[tuple[int, float]]]:
    """Per chosen item, its ``top`` history items by contribution ``full[c] - occluded[r, c]``, positive only.

    ``full`` [V] is the score row of the whole history, ``occluded`` [R, V] one row per entry of
    ``distinct`` (the history item left out). An item no history item raised gets an empty list.
    """
    if len(distinct) == 0 or len(chosen) == 0:
        return [[] for _ in chosen]
    drop = full[chosen][:, None] - occluded[:, chosen].T  # [n_chosen, R]
    out = []
    for row in drop:
        order = np.argsort(-row, kind="stable")[:top]
        out.append([(int(distinct[r]), float(row[r])) for r in order if row[r] > 0])
    return out
