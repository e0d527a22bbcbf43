"""Stage 4 of `generate`: order lines - repeat, successor or fresh item, quantities, basket timestamps, prices."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from ecomine.datasets.synthetic._catalogue import SynthCatalogue
from ecomine.datasets.synthetic._params import SynthParams
from ecomine.datasets.synthetic._people import Orders, Users
from ecomine.datasets.synthetic._vocab import _BULK_HIGH, _BULK_LOW, _BULK_P, _ids


@dataclass
class Lines:
    """Purchase lines in (order, basket position) order; one line per (order, item)."""

    l_order: np.ndarray  # index into the orders
    l_user: np.ndarray
    items_seq: np.ndarray  # item index per line
    qty: np.ndarray
    bulk: np.ndarray  # bought at the bulk multiplier
    l_ts: np.ndarray  # us since the epoch
    l_price: np.ndarray
    o_id: np.ndarray  # order ids ("S000123"), per order, in time order


def draw_lines(rng: np.random.Generator, p: SynthParams, cat: SynthCatalogue, users: Users, orders: Orders) -> Lines:
    """Mechanism draws vectorised, the item sequence in one pass; quantities; duplicates merged; stamps."""
    n_d, n_c = p.days, p.n_categories
    o_user, o_day, o_ts, o_lines = orders.o_user, orders.o_day, orders.o_ts, orders.o_lines
    n_o = o_user.size
    w0, w1, qty_mu, pack, wholesale = users.w0, users.w1, users.qty_mu, users.pack, users.wholesale
    item_cat, fresh_cum, successor = cat.item_cat, cat.fresh_cum, cat.successor
    avail_from, avail_to, qty_factor, base_price = cat.avail_from, cat.avail_to, cat.qty_factor, cat.base_price
    l_order = np.repeat(np.arange(n_o), o_lines)
    n_l = l_order.size
    l_user = o_user[l_order]
    l_pos = np.arange(n_l) - np.repeat(np.cumsum(o_lines) - o_lines, o_lines)
    l_day = o_day[l_order]
    fresh = _sample_items(rng, l_user, l_day, n_d, w0, w1, fresh_cum, item_cat, n_c)
    mech_u = rng.random(n_l)
    hist_u = rng.random(n_l)
    items_seq = np.empty(n_l, dtype=np.int64)
    succ_list = successor.tolist()
    on_from, on_to = avail_from.tolist(), avail_to.tolist()
    r, s = p.repeat_prob, p.successor_prob
    hist: list[int] = []
    cur: list[int] = []
    prev_user, prev_order, prev_item = -1, -1, -1
    for k, (uu, oo, dd, fr, mu, hu) in enumerate(zip(
            l_user.tolist(), l_order.tolist(), l_day.tolist(), fresh.tolist(), mech_u.tolist(), hist_u.tolist())):
        if uu != prev_user:
            hist, cur, prev_user, prev_item = [], [], uu, -1
        if oo != prev_order:
            hist.extend(cur)
            cur, prev_order = [], oo
        it = fr  # fresh, also when a repeat / successor is not on sale that day
        if mu < r:
            if hist:
                it = hist[int(hu * len(hist))]
        elif mu < r + s:
            if prev_item >= 0:
                it = succ_list[prev_item]
        if not on_from[it] <= dd < on_to[it]:
            it = fr
        cur.append(it)
        prev_item = it
        items_seq[k] = it

    # quantities: pack * (1 + Poisson((mu_u - 1) * f_i)) * bulk multiplier
    base_q = 1 + rng.poisson((qty_mu[l_user] - 1.0) * qty_factor[items_seq])
    bulk = rng.random(n_l) < _BULK_P
    mult = np.where(bulk, rng.integers(_BULK_LOW, _BULK_HIGH + 1, size=n_l), 1)
    qty = pack[l_user] * base_q * mult

    # merge duplicate items within an order (keep the first line's position, sum units)
    lines = pl.DataFrame({
        "o": l_order, "pos": l_pos, "i": items_seq, "q": qty.astype(np.int64), "bulk": bulk,
    }).group_by(["o", "i"], maintain_order=True).agg(
        pl.col("pos").first(), pl.col("q").sum(), pl.col("bulk").any(),
    ).sort(["o", "pos"])
    l_order = lines["o"].to_numpy()
    items_seq = lines["i"].to_numpy()
    qty = lines["q"].to_numpy()
    bulk = lines["bulk"].to_numpy()
    n_l = l_order.size
    l_user = o_user[l_order]
    starts = np.r_[0, np.flatnonzero(np.diff(l_order)) + 1] if n_l else np.zeros(0, np.int64)
    l_pos = np.arange(n_l) - np.repeat(starts, np.diff(np.r_[starts, n_l])) if n_l else np.zeros(0, np.int64)
    # lines are stamped as added to the basket: the first at the order's time, then every ~30 s
    l_ts = o_ts[l_order] + (l_pos * 30 + np.where(l_pos > 0, rng.integers(0, 30, size=n_l), 0)) * 1_000_000
    l_price = np.round(base_price[items_seq] * np.where(wholesale[l_user], 0.85, 1.0), 2)

    # order ids: invoice-like, in time order
    chrono = np.argsort(o_ts, kind="stable")
    o_id = np.empty(n_o, dtype=object)
    o_id[chrono] = _ids("S", n_o)
    return Lines(l_order=l_order, l_user=l_user, items_seq=items_seq, qty=qty, bulk=bulk, l_ts=l_ts,
                 l_price=l_price, o_id=o_id)


def _sample_items(
    rng: np.random.Generator,
    users: np.ndarray,
    day: np.ndarray,
    n_days: int,
    w0: np.ndarray,
    w1: np.ndarray,
    fresh_cum: np.ndarray,
    item_cat: np.ndarray,
    n_cat: int,
) -> np.ndarray:
    """Fresh draws: a category from the user's interest on that day, then an item on sale by popularity."""
    if users.size == 0:
        return np.zeros(0, dtype=np.int64)
    n_i = item_cat.size
    tau = (day + 0.5) / n_days
    w = (1.0 - tau)[:, None] * w0[users] + tau[:, None] * w1[users]
    cw = np.cumsum(w, axis=1)
    u = rng.random(users.size) * cw[:, -1]
    cat = np.minimum((cw < u[:, None]).sum(axis=1), n_cat - 1)
    v = np.clip(1.0 - rng.random(users.size), 1e-9, 1.0)
    pos = np.searchsorted(fresh_cum, day * n_cat + cat + v, side="left") - day * n_i
    block_start = np.searchsorted(item_cat, np.arange(n_cat), side="left")
    block_last = np.searchsorted(item_cat, np.arange(n_cat), side="right") - 1
    return np.clip(pos, block_start[cat], block_last[cat])
