"""Warm start: the weights of an earlier version (the champion's, when retraining) as a run's init.

Sits in `train` beside the runner: the driver reads the version folder's
`model.safetensors` once, lines it up with the freshly built model of this run
and ships the result to every worker (`train_loop_per_worker` loads it before
the first step), so workers never need the registry.

Lining up: a tensor of the same name and shape is copied; a recommend model's
item tensors (embedding rows, output bias) are matched **by item id**, because
the catalogue grows between windows: rows of items both versions know are
copied, new items keep this run's fresh init, the padding / [MASK] rows come
along. A recommender's item-token vectors (`models.item_tokens`) are matched
**by token**, the earlier token list rebuilt from the version's item texts; the
item -> token index is this run's data and is never carried over. Anything else
keeps its init and is counted in the summary (the run record says how much was
carried over).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["WarmStart", "warm_start_state"]


@dataclass
class WarmStart:
    """The tensors a run starts from and what happened to each."""

    state: dict[str, np.ndarray]
    copied: list[str] = field(default_factory=list)
    remapped: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    shared_items: int | None = None

    def summary(self) -> dict[str, Any]:
        return {"copied": len(self.copied), "remapped_by_key": self.remapped, "kept_init": self.skipped,
                "shared_items": self.shared_items}


TOKEN_INDEX, TOKEN_VECTORS = "item_tokens.index", "item_tokens.bag.weight"  # models.item_tokens' tensors


def _items_json(folder: Path) -> tuple[list[str] | None, list | None]:
    """The version's item ids and item texts from its items.json (None for what it lacks)."""
    f = folder / "items.json"
    raw = json.loads(f.read_text()) if f.exists() else None
    items = raw.get("items") if isinstance(raw, dict) else raw
    texts = raw.get("texts") if isinstance(raw, dict) else None
    return ([str(i) for i in items] if isinstance(items, list) else None), (texts if isinstance(texts, list) else None)


def _key_mapping(old: list[str], new: list[str]) -> np.ndarray:
    """new id - 1 -> old id (1-based; -1 where the key is new), for rows keyed by item or by token."""
    where = {key: i + 1 for i, key in enumerate(old)}
    return np.array([where.get(key, -1) for key in new], dtype=np.int64)


def _remap_rows(init: np.ndarray, prev: np.ndarray, mapping: np.ndarray) -> np.ndarray:
    """`init` with rows 1..len(mapping) taken from `prev` where the key is known; row 0 and any rows past
    the keys (padding, a [MASK]) as the version held them."""
    rows, known = init.copy(), mapping >= 0
    rows[0] = prev[0]
    rows[1:][: len(mapping)][known] = prev[mapping[known]]
    tail = rows.shape[0] - len(mapping) - 1  # the caller checked the version has as many
    if tail:
        rows[-tail:] = prev[-tail:]
    return rows


def warm_start_state(folder: str | Path, model: Any, new_items: list[str] | None,
                     new_tokens: list[str] | None = None) -> WarmStart:
    """The state dict `model` (freshly built for this run) should start from, taken from `folder`.

    `new_items`: this run's item vocabulary (id i+1 = new_items[i]; 0 is padding) when the
    task has one; `new_tokens` its item-token vocabulary (`models.item_tokens`) when the
    model has one. ValueError naming the folder when it holds no weights (a baseline or an
    ensemble version: warm start needs one trained network).
    """
    from safetensors.numpy import load_file

    folder = Path(folder)
    weights = folder / "model.safetensors"
    if not weights.exists():
        raise ValueError(f"run.warm_start: {folder} holds no model.safetensors (a baseline or ensemble version?)")
    old = load_file(str(weights))
    old_items, old_texts = _items_json(folder)
    target = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    out = WarmStart(state={})
    mapping = None
    if old_items is not None and new_items is not None:
        mapping = _key_mapping(old_items, new_items)
        out.shared_items = int((mapping >= 0).sum())
    tokens = None
    if TOKEN_VECTORS in target and new_tokens is not None and old_texts is not None:
        from ecomine.models.item_tokens import item_tokens

        tokens = _key_mapping(item_tokens(old_texts).vocab, new_tokens)  # the version's list, cut as it was cut
    for name, init in target.items():
        prev = old.get(name)
        if name == TOKEN_INDEX or prev is None or prev.ndim != init.ndim or prev.shape[1:] != init.shape[1:]:
            out.skipped.append(name)  # (the token index: this run's items and tokens, whatever the version held)
            continue
        if name == TOKEN_VECTORS:  # rows: [no token, token 1..n]
            if tokens is None or len(tokens) + 1 != init.shape[0] or tokens.max(initial=0) >= prev.shape[0]:
                out.skipped.append(name)
            else:
                out.state[name] = _remap_rows(init, prev, tokens)
                out.remapped.append(name)
            continue
        same_vocab = mapping is None or old_items == new_items
        extra = init.shape[0] - len(new_items) if not same_vocab and init.ndim else None
        if not same_vocab and extra in (1, 2) and prev.shape[0] - len(old_items) == extra:
            out.state[name] = _remap_rows(init, prev, mapping)  # rows: [padding, item 1..n, ([MASK])]
            out.remapped.append(name)
            continue
        if prev.shape == init.shape:
            out.state[name] = prev
            out.copied.append(name)
            continue
        out.skipped.append(name)
    return out
