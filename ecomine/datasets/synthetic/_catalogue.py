"""Stage 1 of `generate`: the catalogue - categories, collections with successor cycles, sale windows, prices, titles."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecomine.datasets.synthetic._params import SynthParams
from ecomine.datasets.synthetic._vocab import (
    _CATEGORIES,
    _COLOURS,
    _CORE_SHARE,
    _GENERAL_ADJECTIVES,
    _GENERIC_NOUNS,
    _MOTIFS,
    _ZIPF,
)


@dataclass
class SynthCatalogue:
    """Items (sorted by category) and what the later stages read of them; day-indexed where per day."""

    table: list  # category rows of _CATEGORIES (and generic ones past its end)
    cat_names: np.ndarray
    cat_risky: np.ndarray
    item_cat: np.ndarray
    pop: np.ndarray  # popularity within the category
    successor: np.ndarray
    collection: np.ndarray
    avail_from: np.ndarray  # first day on sale (day index)
    avail_to: np.ndarray  # first day no longer on sale
    avail: np.ndarray  # (days, items) on sale
    fresh_p: np.ndarray  # (days, items) fresh-draw distribution within the category
    fresh_cum: np.ndarray
    base_price: np.ndarray
    qty_factor: np.ndarray
    high_price: np.ndarray
    titles: list[str]


def build_catalogue(rng: np.random.Generator, p: SynthParams) -> SynthCatalogue:
    """Category blocks, collections with successor cycles, Zipf popularity, sale windows, prices, titles."""
    n_i, n_c, n_d = p.items, p.n_categories, p.days
    table = _category_table(n_c)
    cat_names = np.array([t[0] for t in table], dtype=object)
    cat_risky = np.array([t[4] for t in table])
    item_cat = np.sort(np.concatenate([np.arange(n_c), rng.integers(0, n_c, size=n_i - n_c)]))
    pop = np.zeros(n_i)
    successor = np.arange(n_i)
    collection = np.zeros(n_i, dtype=np.int64)
    avail_from = np.full(n_i, -(10**9), dtype=np.int64)  # first day on sale (day index)
    avail_to = np.full(n_i, 10**9, dtype=np.int64)  # first day no longer on sale
    n_coll = 0
    for c in range(n_c):
        members = np.flatnonzero(item_cat == c)
        members = members[rng.permutation(members.size)]
        sizes: list[int] = []
        left = members.size
        while left > 0:
            size = int(min(left, rng.integers(2, 6)))
            if 0 < left - size < 2:  # no singleton collection at the end
                size = left
            sizes.append(size)
            left -= size
        coll_pop = 1.0 / (np.arange(len(sizes)) + 1.0) ** _ZIPF
        coll_pop = coll_pop[rng.permutation(len(sizes))]
        at = 0
        for k, size in enumerate(sizes):
            ids = members[at:at + size]
            pop[ids] = coll_pop[k] / size  # equal within a collection: successors keep popularity
            successor[ids] = np.roll(ids, -1)
            collection[ids] = n_coll
            # a range is on sale for a window; the category's best seller (so every category
            # always has something on sale) and about half the others always
            if coll_pop[k] < coll_pop.max() and rng.random() > _CORE_SHARE:
                first = int(rng.integers(-n_d // 3, n_d))
                avail_from[ids] = first
                avail_to[ids] = first + int(rng.integers(int(0.3 * n_d) + 1, int(0.8 * n_d) + 2))
            n_coll += 1
            at += size
        pop[members] /= pop[members].sum()
    day_idx = np.arange(n_d)
    avail = (day_idx[:, None] >= avail_from[None, :]) & (day_idx[:, None] < avail_to[None, :])  # (days, items)
    fresh_p, fresh_cum = _fresh_tables(pop, avail, item_cat, n_c)
    log_mu = np.log(2.5) + np.array([t[3] for t in table]) + rng.normal(0, 0.15, size=n_c)
    base_price = np.maximum(0.29, np.round(np.exp(log_mu[item_cat] + rng.normal(0, 0.55, size=n_i)), 2))
    qty_factor = np.clip((np.median(base_price) / base_price) ** 0.5, 0.3, 3.0)
    high_price = base_price >= np.quantile(base_price, 0.8)
    titles = _titles(rng, item_cat, collection, table)
    return SynthCatalogue(
        table=table, cat_names=cat_names, cat_risky=cat_risky, item_cat=item_cat, pop=pop, successor=successor,
        collection=collection, avail_from=avail_from, avail_to=avail_to, avail=avail, fresh_p=fresh_p,
        fresh_cum=fresh_cum, base_price=base_price, qty_factor=qty_factor, high_price=high_price, titles=titles,
    )


def _category_table(n: int) -> list[tuple[str, tuple[str, ...], tuple[str, ...], float, bool]]:
    table = list(_CATEGORIES[:n])
    for k in range(len(table), n):
        table.append((f"category_{k + 1:02d}", _GENERIC_NOUNS, _GENERAL_ADJECTIVES, 0.0, False))
    return table



def _titles(rng: np.random.Generator, item_cat: np.ndarray, collection: np.ndarray, table: list) -> list[str]:
    """Gift-ware titles "<ADJECTIVE> <COLOUR> <MOTIF> <NOUN>": a collection shares colour and motif."""
    titles = [""] * item_cat.size
    seen: set[str] = set()
    for coll in np.unique(collection).tolist():
        members = np.flatnonzero(collection == coll).tolist()
        _, nouns, adjectives, _, _ = table[int(item_cat[members[0]])]
        colour = _COLOURS[rng.integers(len(_COLOURS))]
        motif = _MOTIFS[rng.integers(len(_MOTIFS))]
        picks = rng.permutation(len(nouns)).tolist()
        for j, item in enumerate(members):
            noun = nouns[picks[j % len(nouns)]]
            for _ in range(20):
                adj = adjectives[rng.integers(len(adjectives))] if rng.random() < 0.6 else \
                    _GENERAL_ADJECTIVES[rng.integers(len(_GENERAL_ADJECTIVES))]
                title = f"{adj} {colour} {motif} {noun}"
                if title not in seen:
                    break
                noun = nouns[rng.integers(len(nouns))]
            else:
                title = f"{title} NO. {item + 1}"
            seen.add(title)
            titles[item] = title
    return titles


def _fresh_tables(
    pop: np.ndarray, avail: np.ndarray, item_cat: np.ndarray, n_cat: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-day fresh-draw distribution of items within their category, and its flat CDF.

    `fresh_p[d, i]` = pop(i) on sale at d, normalised within i's category. `fresh_cum`
    (days * items, non-decreasing) puts day d, category c's cumulative mass in
    (d * n_cat + c, d * n_cat + c + 1], so one searchsorted samples any (day, category).
    Items are sorted by category.
    """
    n_d, n_i = avail.shape
    weight = pop[None, :] * avail
    block_end = np.r_[np.flatnonzero(np.diff(item_cat)), n_i - 1]
    csum = np.cumsum(weight, axis=1)
    block_before = np.concatenate([np.zeros((n_d, 1)), csum[:, block_end[:-1]]], axis=1)  # (days, categories)
    before = block_before[:, item_cat]
    total = (csum[:, block_end] - block_before)[:, item_cat]  # > 0: a category's best seller is always on sale
    fresh_p = weight / total
    within = np.minimum((csum - before) / total, 1.0)
    within[within > 1.0 - 1e-12] = 1.0
    cum = np.arange(n_d)[:, None] * n_cat + item_cat[None, :] + within
    return fresh_p, cum.reshape(-1)
