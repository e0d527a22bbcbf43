"""Next-item baselines: every recommendation report prints them beside the model, and they serve as versions.

Sits in ``ecomine.models`` beside the transformer (``models.recommend``): each
baseline is a scorer (the ``Scorer`` protocol of ``ecomine.train.recommend_metrics``) fitted on TRAINING sequences only (lists of
chronological int arrays of item ids) and scores the full catalogue, dense
``[batch, n_items]`` float32. ``pad_id`` (if given) is ignored in sequences and
histories and scored ``-inf``, so it is never recommended.

Every baseline ranks the whole catalogue: items a baseline knows nothing about
for a user get a tiny popularity score, so they are ordered by popularity rather
than tied (ties count against a model in :func:`~ecomine.train.recommend_metrics.rank_of_targets`).

``BaselineRecommender`` wraps a fitted baseline in the served model protocol
(``score(histories, device=...)``), and ``save_baseline`` / ``load_baseline``
write and read it as safetensors arrays plus a JSON of its settings, so a
non-neural scorer can be a registry version and an ensemble member.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp


__all__ = [
    "MostPopular",
    "ItemKNN",
    "UserHistory",
    "RecentHistory",
    "fit_baselines",
    "BASELINE_KINDS",
    "BASELINE_FILE",
    "BaselineRecommender",
    "save_baseline",
    "load_baseline",
]

# Popularity tie-break added to ItemKNN scores: far below any non-zero similarity
# sum (>= decay**(last_n-1) / n_users), so it only orders items scored zero.
_KNN_TIEBREAK = 1e-9


def _check_setup(n_items: int, pad_id: int | None) -> None:
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    if pad_id is not None and not 0 <= pad_id < n_items:
        raise ValueError(f"pad_id {pad_id} is outside 0..{n_items - 1}")


def _flatten(
    sequences: Sequence[np.ndarray], n_items: int, pad_id: int | None, what: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate sequences (pad removed): items, row of each, position in its row, row lengths."""
    cleaned: list[np.ndarray] = []
    for i, seq in enumerate(sequences):
        s = np.asarray(seq).ravel()
        if s.size and not np.issubdtype(s.dtype, np.integer):
            raise ValueError(f"{what} {i} must hold integer item ids, got dtype {s.dtype}")
        s = s.astype(np.int64, copy=False)
        bad = (s < 0) | (s >= n_items)
        if bad.any():
            raise ValueError(f"{what} {i} holds item id {int(s[bad][0])}, outside 0..{n_items - 1}")
        if pad_id is not None:
            s = s[s != pad_id]
        cleaned.append(s)
    lengths = np.fromiter((len(s) for s in cleaned), dtype=np.int64, count=len(cleaned))
    total = int(lengths.sum())
    if total == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, lengths
    items = np.concatenate(cleaned)
    rows = np.repeat(np.arange(len(cleaned)), lengths)
    starts = np.cumsum(lengths) - lengths
    positions = np.arange(total) - np.repeat(starts, lengths)
    return items, rows, positions, lengths


def _tiebreak(popularity: np.ndarray) -> np.ndarray:
    """Popularity mapped into [0, 1), same order."""
    top = float(popularity.max()) if popularity.size else 0.0
    return (popularity / (top + 1.0)) if top > 0 else np.zeros_like(popularity)


class _FittedScorer:
    """Shared state: catalogue size, pad id and training popularity (counts)."""

    def __init__(self, n_items: int, *, pad_id: int | None = None) -> None:
        _check_setup(n_items, pad_id)
        self.n_items = n_items
        self.pad_id = pad_id
        self.popularity: np.ndarray | None = None

    def _require_fit(self) -> np.ndarray:
        if self.popularity is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call .fit(train_sequences)")
        return self.popularity

    def _fit_popularity(self, sequences: Sequence[np.ndarray]) -> None:
        items, _, _, _ = _flatten(sequences, self.n_items, self.pad_id, "training sequence")
        self.popularity = np.bincount(items, minlength=self.n_items).astype(np.float64)

    def _finish(self, scores: np.ndarray) -> np.ndarray:
        scores = scores.astype(np.float32, copy=False)
        if self.pad_id is not None:
            scores[:, self.pad_id] = -np.inf
        return scores

    def __repr__(self) -> str:
        fitted = "fitted" if self.popularity is not None else "not fitted"
        return f"{type(self).__name__}(n_items={self.n_items}, pad_id={self.pad_id}, {fitted})"


class MostPopular(_FittedScorer):
    """Scores every user alike by how often each item was bought in training.

    With ``half_life`` set, each event weighs ``0.5 ** (age / half_life)``; ages
    come from ``fit(..., ages=...)`` (e.g. days before the training cut-off, one
    array per sequence) or, when not given, from the position counted back from
    the end of each sequence (0 for a user's latest event).
    """

    def __init__(
        self, n_items: int, *, pad_id: int | None = None, half_life: float | None = None
    ) -> None:
        super().__init__(n_items, pad_id=pad_id)
        if half_life is not None and not half_life > 0:
            raise ValueError(f"half_life must be > 0, got {half_life}")
        self.half_life = half_life
        self.weights: np.ndarray | None = None

    def fit(
        self, sequences: Sequence[np.ndarray], *, ages: Sequence[np.ndarray] | None = None
    ) -> MostPopular:
        self._fit_popularity(sequences)
        if self.half_life is None:
            self.weights = self._require_fit().copy()
            return self
        items, rows, positions, lengths = _flatten(
            sequences, self.n_items, self.pad_id, "training sequence"
        )
        if ages is None:
            age_flat = (lengths[rows] - 1 - positions).astype(np.float64)
        else:
            if len(ages) != len(sequences):
                raise ValueError(f"ages has {len(ages)} arrays for {len(sequences)} sequences")
            for i, (seq, age) in enumerate(zip(sequences, ages)):
                if np.size(seq) != np.size(age):
                    raise ValueError(f"ages {i} has {np.size(age)} values for {np.size(seq)} items")
            age_flat = np.concatenate(
                [np.asarray(a, dtype=np.float64).ravel() for a in ages] or [np.zeros(0)]
            )
            if self.pad_id is not None:
                raw = np.concatenate(
                    [np.asarray(q).ravel() for q in sequences] or [np.zeros(0, dtype=np.int64)]
                )
                age_flat = age_flat[raw != self.pad_id]
        w = np.power(0.5, age_flat / self.half_life)
        self.weights = np.bincount(items, weights=w, minlength=self.n_items)
        return self

    def score(self, histories: list[np.ndarray]) -> np.ndarray:
        self._require_fit()
        assert self.weights is not None
        return self._finish(np.tile(self.weights.astype(np.float32), (len(histories), 1)))


class ItemKNN(_FittedScorer):
    """Item-to-item cosine similarity of co-occurrence, scored from a user's recent items.

    ``sim[i, j] = users(i, j) / sqrt(users(i) * users(j))`` where ``users(i, j)``
    counts users whose training sequence holds both items (within ``window``
    positions of each other if ``window`` is set) and ``users(i)`` counts users
    with item ``i``; ``sim[i, i] = 0``. ``neighbours`` keeps each item's top-k
    similarities only. A user scores ``sum_k decay**k * sim[h_k]`` over the last
    ``last_n`` events of the history (``k = 0`` the latest), plus a tiny
    popularity term that orders items no history item co-occurs with.
    Defaults (decay 0.5, last 10) are the settings chosen on Online Retail.
    """

    def __init__(
        self,
        n_items: int,
        *,
        pad_id: int | None = None,
        decay: float = 0.5,
        last_n: int = 10,
        window: int | None = None,
        neighbours: int | None = None,
    ) -> None:
        super().__init__(n_items, pad_id=pad_id)
        if not 0 < decay <= 1:
            raise ValueError(f"decay must be in (0, 1], got {decay}")
        if last_n < 1:
            raise ValueError(f"last_n must be >= 1, got {last_n}")
        if window is not None and window < 1:
            raise ValueError(f"window must be >= 1 or None, got {window}")
        if neighbours is not None and neighbours < 1:
            raise ValueError(f"neighbours must be >= 1 or None, got {neighbours}")
        self.decay = decay
        self.last_n = last_n
        self.window = window
        self.neighbours = neighbours
        self.similarity: sp.csr_matrix | None = None

    def fit(self, sequences: Sequence[np.ndarray]) -> ItemKNN:
        items, rows, _, lengths = _flatten(
            sequences, self.n_items, self.pad_id, "training sequence"
        )
        self.popularity = np.bincount(items, minlength=self.n_items).astype(np.float64)
        n, n_users = self.n_items, len(lengths)
        user_item = sp.csr_matrix(
            (np.ones(items.size, dtype=np.float32), (rows, items)), shape=(n_users, n)
        )
        user_item.sum_duplicates()
        user_item.data[:] = 1.0  # a user either has an item or not
        users_per_item = np.asarray(user_item.sum(axis=0)).ravel()
        if self.window is None:
            co = (user_item.T @ user_item).tocsr()
        else:
            co = self._windowed_cooccurrence(items, rows)
        co.setdiag(0)
        co.eliminate_zeros()
        inv = np.zeros(n, dtype=np.float64)
        nz = users_per_item > 0
        inv[nz] = 1.0 / np.sqrt(users_per_item[nz])
        co = co.tocoo()
        sim = sp.csr_matrix(
            ((co.data * inv[co.row] * inv[co.col]).astype(np.float32), (co.row, co.col)),
            shape=(n, n),
        )
        if self.neighbours is not None:
            sim = _top_k_per_row(sim, self.neighbours)
        self.similarity = sim
        return self

    def _windowed_cooccurrence(self, items: np.ndarray, rows: np.ndarray) -> sp.csr_matrix:
        """Users in whose sequence i and j fall within ``window`` positions (symmetric)."""
        n = self.n_items
        assert self.window is not None
        pair_l, user_l = [], []
        for d in range(1, self.window + 1):
            same = (rows[:-d] == rows[d:]) & (items[:-d] != items[d:])
            a, b = items[:-d][same], items[d:][same]
            pair_l.append(np.minimum(a, b) * n + np.maximum(a, b))
            user_l.append(rows[:-d][same])
        pair = np.concatenate(pair_l) if pair_l else np.zeros(0, dtype=np.int64)
        user = np.concatenate(user_l) if user_l else np.zeros(0, dtype=np.int64)
        order = np.lexsort((user, pair))
        pair, user = pair[order], user[order]
        first = np.ones(pair.size, dtype=bool)
        first[1:] = (pair[1:] != pair[:-1]) | (user[1:] != user[:-1])
        pair = pair[first]
        a, b = pair // n, pair % n
        ones = np.ones(pair.size, dtype=np.float32)
        upper = sp.csr_matrix((ones, (a, b)), shape=(n, n))  # duplicates sum: users per pair
        return (upper + upper.T).tocsr()

    def score(self, histories: list[np.ndarray]) -> np.ndarray:
        popularity = self._require_fit()
        assert self.similarity is not None
        items, rows, positions, lengths = _flatten(histories, self.n_items, self.pad_id, "history")
        back = lengths[rows] - 1 - positions  # 0 = latest event
        recent = back < self.last_n
        query = sp.csr_matrix(
            (np.power(self.decay, back[recent]).astype(np.float32), (rows[recent], items[recent])),
            shape=(len(histories), self.n_items),
        )
        scores = (query @ self.similarity).toarray()
        scores += (_KNN_TIEBREAK * _tiebreak(popularity)).astype(np.float32)
        return self._finish(scores)


def _top_k_per_row(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    matrix = matrix.tocsr()
    indptr, data = matrix.indptr, matrix.data
    keep = np.zeros(data.size, dtype=bool)
    for r in range(matrix.shape[0]):
        lo, hi = indptr[r], indptr[r + 1]
        if hi - lo <= k:
            keep[lo:hi] = True
        else:
            keep[lo + np.argpartition(-data[lo:hi], k - 1)[:k]] = True
    coo = matrix.tocoo()
    return sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=matrix.shape)


class _HistoryBased(_FittedScorer):
    """Scores the user's own items above all others; unseen items by popularity (< 0.5)."""

    def fit(self, sequences: Sequence[np.ndarray]) -> _HistoryBased:
        self._fit_popularity(sequences)
        return self

    def _seen_scores(
        self, counts: np.ndarray, last_pos: np.ndarray, lengths: np.ndarray
    ) -> np.ndarray:
        raise NotImplementedError

    def score(self, histories: list[np.ndarray]) -> np.ndarray:
        popularity = self._require_fit()
        n, batch = self.n_items, len(histories)
        items, rows, positions, lengths = _flatten(histories, n, self.pad_id, "history")
        cell = rows * n + items
        counts = np.bincount(cell, minlength=batch * n).reshape(batch, n)
        last_pos = np.full(batch * n, -1, dtype=np.int64)
        np.maximum.at(last_pos, cell, positions)
        last_pos = last_pos.reshape(batch, n)
        seen = counts > 0
        scores = np.broadcast_to(0.5 * _tiebreak(popularity), (batch, n)).copy()
        seen_scores = self._seen_scores(counts, last_pos, lengths[:, None])
        scores[seen] = seen_scores[seen]
        return self._finish(scores)


class UserHistory(_HistoryBased):
    """Most frequent: the user's own items by purchase count, ties to the most recent."""

    def _seen_scores(
        self, counts: np.ndarray, last_pos: np.ndarray, lengths: np.ndarray
    ) -> np.ndarray:
        # count >= 1 dominates; recency in (0, 1) only breaks ties between equal counts.
        return counts + (last_pos + 1) / (lengths + 1.0)


class RecentHistory(_HistoryBased):
    """Most recent: the user's own items, the latest bought first."""

    def _seen_scores(
        self, counts: np.ndarray, last_pos: np.ndarray, lengths: np.ndarray
    ) -> np.ndarray:
        return 1.0 + (last_pos + 1) / (lengths + 1.0)


def fit_baselines(
    train_sequences: Sequence[np.ndarray], n_items: int, *, pad_id: int | None = None
) -> dict[str, _FittedScorer]:
    """The standard set, fitted on training sequences, keyed by report name."""
    return {
        "most_popular": MostPopular(n_items, pad_id=pad_id).fit(train_sequences),
        "item_knn": ItemKNN(n_items, pad_id=pad_id).fit(train_sequences),
        "user_history": UserHistory(n_items, pad_id=pad_id).fit(train_sequences),
        "recent_history": RecentHistory(n_items, pad_id=pad_id).fit(train_sequences),
    }


BASELINE_KINDS = {"most_popular": MostPopular, "item_knn": ItemKNN, "user_history": UserHistory, "recent_history": RecentHistory}
BASELINE_FILE = "baseline.json"
_ARRAYS_FILE = "baseline.safetensors"


class BaselineRecommender:
    """A fitted baseline in the served recommend protocol: ``score(histories, device=...) -> [B, n_items]``."""

    def __init__(self, kind: str, scorer: _FittedScorer) -> None:
        self.kind, self.scorer = kind, scorer

    def eval(self) -> BaselineRecommender:
        return self

    def score(self, histories: list[np.ndarray], device: str = "cpu") -> np.ndarray:
        return self.scorer.score([np.asarray(h, dtype=np.int64) for h in histories])


def save_baseline(folder, model: BaselineRecommender) -> None:
    """``baseline.json`` (kind and settings) + ``baseline.safetensors`` (fitted arrays) into ``folder``."""
    import json
    from pathlib import Path

    from safetensors.numpy import save_file

    sc = model.scorer
    params = {k: getattr(sc, k) for k in ("n_items", "pad_id", "half_life", "decay", "last_n", "window", "neighbours")
              if hasattr(sc, k)}
    arrays = {"popularity": sc._require_fit()}
    if isinstance(sc, MostPopular):
        arrays["weights"] = sc.weights
    if isinstance(sc, ItemKNN):
        sim = sc.similarity.tocsr()
        arrays.update(sim_indptr=sim.indptr.astype(np.int64), sim_indices=sim.indices.astype(np.int64), sim_data=sim.data)
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(Path(folder) / _ARRAYS_FILE))
    (Path(folder) / BASELINE_FILE).write_text(json.dumps({"kind": model.kind, "params": params}, indent=2))


def load_baseline(folder) -> BaselineRecommender:
    import json
    from pathlib import Path

    from safetensors.numpy import load_file

    meta = json.loads((Path(folder) / BASELINE_FILE).read_text())
    kind = meta["kind"]
    if kind not in BASELINE_KINDS:
        raise ValueError(f"{folder}: baseline kind {kind!r} is not one of {sorted(BASELINE_KINDS)}")
    sc = BASELINE_KINDS[kind](**meta["params"])
    arrays = load_file(str(Path(folder) / _ARRAYS_FILE))
    sc.popularity = arrays["popularity"]
    if isinstance(sc, MostPopular):
        sc.weights = arrays["weights"]
    if isinstance(sc, ItemKNN):
        n = sc.n_items
        sc.similarity = sp.csr_matrix((arrays["sim_data"], arrays["sim_indices"], arrays["sim_indptr"]), shape=(n, n))
    return BaselineRecommender(kind, sc)
