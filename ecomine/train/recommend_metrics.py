"""Full-catalogue ranking metrics for next-item recommendation, and their report.

Sits in ``ecomine.train``: a fitted model or baseline (any :class:`Scorer`) scores
every item for each user; this module ranks the held-out next item among ALL items
(no sampled negatives) under two protocols and prints/serialises the result.

Ranks are 0-based and pessimistic: a target's rank is the number of other rankable
items whose score is ``>=`` the target's score. Ties therefore count against the
model, so a constant (or all-NaN) scorer ranks every target last and scores zero.
NaN scores rank below every number. Masked items (``exclude``, ``pad_id``) are
not rankable and do not count. The target itself is never masked.

Protocols returned by :func:`evaluate_scorer`:

``all_items``
    the user's own past items stay rankable (repurchase counts as a hit);
``new_items``
    the user's history is masked, and examples whose target is already in the
    history are dropped (``n_dropped`` says how many).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from rich.table import Table

__all__ = [
    "Scorer",
    "PROTOCOLS",
    "rank_of_targets",
    "ranking_metrics",
    "evaluate_scorer",
    "format_report",
]

PROTOCOLS: tuple[str, ...] = ("all_items", "new_items")


@runtime_checkable
class Scorer(Protocol):
    """Anything that scores every item for a batch of user histories.

    ``histories`` are chronological 1-D int arrays of item ids (oldest first).
    Returns an array of shape ``[len(histories), n_items]`` (float32 preferred);
    higher means more likely next. Masked/unrankable items may be ``-inf``.
    """

    def score(self, histories: list[np.ndarray]) -> np.ndarray: ...


def _exclusion_mask(
    n_rows: int, n_items: int, exclude: Sequence[np.ndarray] | None, pad_id: int | None
) -> np.ndarray | None:
    """Boolean [n_rows, n_items] mask of unrankable items, or None when nothing is masked."""
    if exclude is None and pad_id is None:
        return None
    mask = np.zeros((n_rows, n_items), dtype=bool)
    if pad_id is not None:
        mask[:, pad_id] = True
    if exclude is not None:
        if len(exclude) != n_rows:
            raise ValueError(f"exclude has {len(exclude)} rows but scores has {n_rows}")
        lengths = np.fromiter((len(e) for e in exclude), dtype=np.int64, count=n_rows)
        if lengths.sum():
            cols = np.concatenate([np.asarray(e, dtype=np.int64).ravel() for e in exclude])
            bad = (cols < 0) | (cols >= n_items)
            if bad.any():
                raise ValueError(
                    f"exclude holds item id {int(cols[bad][0])}, outside 0..{n_items - 1}"
                )
            mask[np.repeat(np.arange(n_rows), lengths), cols] = True
    return mask


def rank_of_targets(
    scores: np.ndarray,
    targets: np.ndarray,
    *,
    exclude: Sequence[np.ndarray] | None = None,
    pad_id: int | None = None,
) -> np.ndarray:
    """0-based rank of each row's target among all rankable items (pessimistic ties).

    ``rank = #{j != target, j rankable : scores[j] >= scores[target]}``.
    ``exclude[i]`` lists item ids made unrankable in row ``i`` (the new-items
    protocol passes the user's history); ``pad_id`` is unrankable in every row.
    The target is always kept rankable, even if listed in ``exclude``.
    Returns an int64 array of shape ``[n_rows]``. ``scores`` is never modified.
    """
    scores = np.asarray(scores)
    targets = np.asarray(targets)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D [batch, n_items], got shape {scores.shape}")
    n_rows, n_items = scores.shape
    if targets.shape != (n_rows,):
        raise ValueError(f"targets must have shape ({n_rows},), got {targets.shape}")
    if not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"targets must be integer item ids, got dtype {targets.dtype}")
    if n_rows == 0:
        return np.zeros(0, dtype=np.int64)
    bad = (targets < 0) | (targets >= n_items)
    if bad.any():
        raise ValueError(f"target item id {int(targets[bad][0])} is outside 0..{n_items - 1}")
    if pad_id is not None:
        if not 0 <= pad_id < n_items:
            raise ValueError(f"pad_id {pad_id} is outside 0..{n_items - 1}")
        if (targets == pad_id).any():
            row = int(np.flatnonzero(targets == pad_id)[0])
            raise ValueError(f"target of row {row} is the pad id {pad_id}")

    rows = np.arange(n_rows)
    target_scores = scores[rows, targets]
    at_least = scores >= target_scores[:, None]  # NaN compares False: ranks below numbers
    mask = _exclusion_mask(n_rows, n_items, exclude, pad_id)
    if mask is None:
        n_rankable = np.full(n_rows, n_items, dtype=np.int64)
    else:
        mask[rows, targets] = False
        at_least &= ~mask
        n_rankable = n_items - mask.sum(axis=1)
    ranks = at_least.sum(axis=1, dtype=np.int64) - 1
    # A NaN target compares False even with itself: every rankable item beats it.
    nan_target = np.isnan(target_scores) if np.issubdtype(scores.dtype, np.floating) else None
    if nan_target is not None and nan_target.any():
        ranks[nan_target] = n_rankable[nan_target] - 1
    return ranks


def ranking_metrics(ranks: np.ndarray, ks: Sequence[int] = (5, 10, 20)) -> dict[str, float | int]:
    """HR@K, NDCG@K for each K, MRR (over the full ranking) and n, from 0-based ranks.

    One relevant item per example: HR@K = [rank < K], NDCG@K = 1/log2(rank+2) if
    rank < K else 0, MRR = 1/(rank+1). With no examples every metric is NaN.
    """
    ranks = np.asarray(ranks, dtype=np.float64).ravel()
    if (ranks < 0).any():
        raise ValueError(f"ranks must be >= 0, got {ranks[ranks < 0][0]}")
    out: dict[str, float | int] = {}
    n = int(ranks.size)
    for k in ks:
        if int(k) < 1:
            raise ValueError(f"ks must be positive integers, got {k}")
    for k in sorted({int(k) for k in ks}):
        hit = ranks < k
        out[f"HR@{k}"] = float(hit.mean()) if n else math.nan
        gain = np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0)
        out[f"NDCG@{k}"] = float(gain.mean()) if n else math.nan
    out["MRR"] = float((1.0 / (ranks + 1.0)).mean()) if n else math.nan
    out["n"] = n
    return out


def _check_ids(name: str, ids: np.ndarray, n_items: int, row: int | None = None) -> None:
    bad = (ids < 0) | (ids >= n_items)
    if bad.any():
        where = f" (user {row})" if row is not None else ""
        raise ValueError(
            f"{name}{where} holds item id {int(ids[bad][0])}, outside 0..{n_items - 1}"
        )


def evaluate_scorer(
    scorer: Scorer,
    histories: Sequence[np.ndarray],
    targets: np.ndarray,
    *,
    n_items: int,
    ks: Sequence[int] = (5, 10, 20),
    batch_size: int = 512,
    pad_id: int | None = None,
) -> dict[str, dict[str, float | int]]:
    """Score every user once and report both protocols.

    Returns ``{"all_items": metrics, "new_items": metrics | {"n_dropped": int}}``
    where ``metrics`` is :func:`ranking_metrics`' dict. See the module docstring
    for the two protocols and the tie rule.
    """
    targets = np.asarray(targets)
    if targets.ndim != 1 or len(targets) != len(histories):
        raise ValueError(
            f"targets must be 1-D with one item per history: {len(histories)} histories, "
            f"targets of shape {targets.shape}"
        )
    if not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"targets must be integer item ids, got dtype {targets.dtype}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    _check_ids("targets", targets, n_items)
    hists = [np.asarray(h, dtype=np.int64).ravel() for h in histories]
    for i, h in enumerate(hists):
        _check_ids("history", h, n_items, row=i)

    all_ranks: list[np.ndarray] = []
    new_ranks: list[np.ndarray] = []
    n_dropped = 0
    for start in range(0, len(hists), batch_size):
        batch = hists[start : start + batch_size]
        tgt = targets[start : start + batch_size].astype(np.int64)
        scores = np.asarray(scorer.score(batch))
        if scores.shape != (len(batch), n_items):
            raise ValueError(
                f"{type(scorer).__name__}.score returned shape {scores.shape}, "
                f"expected ({len(batch)}, {n_items})"
            )
        all_ranks.append(rank_of_targets(scores, tgt, pad_id=pad_id))

        lengths = np.fromiter((len(h) for h in batch), dtype=np.int64, count=len(batch))
        seen = np.zeros(len(batch), dtype=bool)
        if lengths.sum():
            flat = np.concatenate(batch)
            row = np.repeat(np.arange(len(batch)), lengths)
            seen[row[flat == tgt[row]]] = True
        keep = np.flatnonzero(~seen)
        n_dropped += int(seen.sum())
        new_ranks.append(
            rank_of_targets(
                scores[keep], tgt[keep], exclude=[batch[i] for i in keep], pad_id=pad_id
            )
        )

    empty = np.zeros(0, dtype=np.int64)
    all_items = ranking_metrics(np.concatenate(all_ranks) if all_ranks else empty, ks)
    new_items = ranking_metrics(np.concatenate(new_ranks) if new_ranks else empty, ks)
    new_items["n_dropped"] = n_dropped
    return {"all_items": all_items, "new_items": new_items}


def format_report(
    results: Mapping[str, Mapping[str, Mapping[str, Any]]],
    *,
    k: int = 10,
    title: str | None = "Next-item ranking (full catalogue)",
) -> Table:
    """A compact ``rich.table.Table``: one row per model/baseline, per protocol HR@k, NDCG@k, MRR.

    ``results`` maps a name to :func:`evaluate_scorer`'s output. The best value of
    each column is bold green; a metric that is missing or NaN prints as ``-``.
    The caption gives each protocol's example count (and the new-items drops).
    """
    from rich.table import Table  # imported here: the metrics themselves need only numpy

    metric_names = (f"HR@{k}", f"NDCG@{k}", "MRR")
    protocols = [p for p in PROTOCOLS if any(p in r for r in results.values())]
    table = Table(title=title)
    table.add_column("model", style="bold", no_wrap=True)
    for protocol in protocols:
        for metric in metric_names:
            table.add_column(f"{protocol.split('_')[0]}\n{metric}", justify="right")

    def value(name: str, protocol: str, metric: str) -> float:
        v = results[name].get(protocol, {}).get(metric)
        return float(v) if v is not None and math.isfinite(float(v)) else math.nan

    for name in results:
        cells = [str(name)]
        for protocol in protocols:
            for metric in metric_names:
                v = value(name, protocol, metric)
                column = [value(other, protocol, metric) for other in results]
                text = "-" if math.isnan(v) else f"{v:.4f}"
                if len(results) > 1 and not math.isnan(v) and v == max(column, key=_nan_low):
                    text = f"[bold green]{text}[/]"
                cells.append(text)
        table.add_row(*cells)

    notes = []
    for protocol in protocols:
        blocks = [r[protocol] for r in results.values() if protocol in r]
        ns = sorted({int(b["n"]) for b in blocks if "n" in b})
        note = f"{protocol.split('_')[0]}: n={'/'.join(f'{n:,}' for n in ns)}"
        dropped = sorted({int(b["n_dropped"]) for b in blocks if "n_dropped" in b})
        if dropped:
            note += (
                f", history masked, {'/'.join(f'{d:,}' for d in dropped)} "
                "with target in history dropped"
            )
        notes.append(note)
    table.caption = "; ".join(notes) + ". Ties count against the model."
    return table


def _nan_low(v: float) -> float:
    return -math.inf if math.isnan(v) else v
