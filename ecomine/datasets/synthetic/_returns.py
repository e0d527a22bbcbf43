"""Stages 5 and 6 of `generate`: returns (a logistic propensity from known factors) and browsing (views, carts)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecomine.datasets.synthetic._catalogue import SynthCatalogue
from ecomine.datasets.synthetic._lines import Lines, _sample_items
from ecomine.datasets.synthetic._params import SynthParams
from ecomine.datasets.synthetic._people import Orders, Users
from ecomine.datasets.synthetic._vocab import RETURN_FACTORS, RISKY_COUNTRY, _HOUR_P, _HOURS, _US_PER_DAY, _ids


@dataclass
class Returns:
    """Per purchase line: return probability and its factor flags, whether (and when, how many) returned."""

    prob: np.ndarray
    f_price: np.ndarray
    f_new: np.ndarray
    f_cat: np.ndarray
    f_country: np.ndarray
    r_ts: np.ndarray
    r_qty: np.ndarray
    observed: np.ndarray  # returned before the log's end
    ret_idx: np.ndarray  # lines returned (observed)
    ret_inv: np.ndarray  # per returned line: index into ro_id
    ro_id: np.ndarray  # return order ids ("R000045"), one per purchase order with returns


def draw_returns(rng: np.random.Generator, p: SynthParams, start_us: int, cat: SynthCatalogue, users: Users,
                 orders: Orders, lines: Lines) -> Returns:
    """Logistic propensity from known factors, intercept solved for return_rate; later returns censored."""
    n_d, n_o, n_l = p.days, orders.o_user.size, lines.l_order.size
    l_order, l_user, items_seq, l_ts, qty, bulk = (
        lines.l_order, lines.l_user, lines.items_seq, lines.l_ts, lines.qty, lines.bulk)
    o_rank, country_names, country, returner = orders.o_rank, users.country_names, users.country, users.returner
    cat_risky, item_cat, high_price = cat.cat_risky, cat.item_cat, cat.high_price
    f_new = o_rank[l_order] < 2
    f_country = country_names[country[l_user]] == RISKY_COUNTRY
    f_cat = cat_risky[item_cat[items_seq]]
    f_price = high_price[items_seq]
    z = (RETURN_FACTORS["high_price"] * f_price + RETURN_FACTORS["bulk"] * bulk
         + RETURN_FACTORS["risky_category"] * f_cat + RETURN_FACTORS["new_user"] * f_new
         + RETURN_FACTORS["risky_country"] * f_country + returner[l_user])
    b0 = _solve_intercept(z, p.return_rate)
    prob = 1.0 / (1.0 + np.exp(-(b0 + z)))
    returned = rng.random(n_l) < prob
    delay_o = rng.integers(1, 61, size=n_o) * _US_PER_DAY + rng.integers(-4, 5, size=n_o) * 3_600_000_000
    r_ts = l_ts + delay_o[l_order]
    end_us = start_us + n_d * _US_PER_DAY
    partial = rng.random(n_l) < 0.3
    r_qty = np.where(partial, 1 + (rng.random(n_l) * qty).astype(np.int64), qty)  # 1..qty
    observed = returned & (r_ts < end_us)
    ret_idx = np.flatnonzero(observed)
    # one return order per (purchase order) — lines returned together, in time order
    ret_orders, ret_inv = np.unique(l_order[ret_idx], return_inverse=True)
    ro_ts = r_ts[ret_idx][np.r_[0, np.flatnonzero(np.diff(ret_inv)) + 1]] if ret_idx.size else np.zeros(0, np.int64)
    ro_id = np.empty(ret_orders.size, dtype=object)
    ro_id[np.argsort(ro_ts, kind="stable")] = _ids("R", ret_orders.size)
    return Returns(prob=prob, f_price=f_price, f_new=f_new, f_cat=f_cat, f_country=f_country, r_ts=r_ts,
                   r_qty=r_qty, observed=observed, ret_idx=ret_idx, ret_inv=ret_inv, ro_id=ro_id)


@dataclass
class Browsing:
    """Views (+ carts) before some orders' lines, and abandoned sessions (no order id)."""

    b_idx: np.ndarray  # purchase lines viewed before their order
    cart_b: np.ndarray  # ... of those, also carted
    ab_user: np.ndarray
    ab_item: np.ndarray
    ab_ts: np.ndarray
    ab_cart: np.ndarray


def draw_browsing(rng: np.random.Generator, p: SynthParams, start_us: int, cat: SynthCatalogue, users: Users,
                  orders: Orders, lines: Lines) -> Browsing:
    """Views (+ carts) before some orders, abandoned carts; every user leaves some trace."""
    n_u, n_d, n_c, n_o = p.users, p.days, p.n_categories, orders.o_user.size
    l_order, n_orders, day_p = lines.l_order, orders.n_orders, orders.day_p
    w0, w1, fresh_cum, item_cat = users.w0, users.w1, cat.fresh_cum, cat.item_cat
    browsed = rng.random(n_o) < p.browse_rate
    b_idx = np.flatnonzero(browsed[l_order])
    cart_b = rng.random(b_idx.size) < 0.6
    n_ab = rng.poisson(0.5 * p.browse_rate * (n_orders + 0.5))
    n_ab[n_orders == 0] = np.maximum(n_ab[n_orders == 0], 1)  # every user leaves some trace
    a_user = np.repeat(np.arange(n_u), n_ab)
    a_day = rng.choice(n_d, size=a_user.size, p=day_p)
    a_ts0 = start_us + a_day.astype(np.int64) * _US_PER_DAY + (
        rng.choice(_HOURS, size=a_user.size, p=_HOUR_P / _HOUR_P.sum()) * 3600
        + rng.integers(0, 3000, size=a_user.size)).astype(np.int64) * 1_000_000
    a_n = rng.integers(1, 4, size=a_user.size)
    ab_user = np.repeat(a_user, a_n)
    ab_pos = np.arange(ab_user.size) - np.repeat(np.cumsum(a_n) - a_n, a_n)
    ab_ts = np.repeat(a_ts0, a_n) + ab_pos * 45_000_000
    ab_item = _sample_items(rng, ab_user, np.repeat(a_day, a_n), n_d, w0, w1, fresh_cum, item_cat, n_c)
    ab_cart = rng.random(ab_user.size) < 0.5
    return Browsing(b_idx=b_idx, cart_b=cart_b, ab_user=ab_user, ab_item=ab_item, ab_ts=ab_ts, ab_cart=ab_cart)


def _solve_intercept(z: np.ndarray, target: float) -> float:
    """Intercept b0 with mean(sigmoid(b0 + z)) == target (bisection; monotone in b0)."""
    if z.size == 0 or target <= 0:
        return -30.0
    lo, hi = -30.0, 30.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if np.mean(1.0 / (1.0 + np.exp(-(mid + z)))) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
