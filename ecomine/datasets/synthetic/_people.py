"""Stages 2 and 3 of `generate`: users (interests that drift, country, activity, habits) and their orders in time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from ecomine.datasets.synthetic._params import SynthParams
from ecomine.datasets.synthetic._vocab import (
    _ACT_SIGMA,
    _ALPHA_BG,
    _COUNTRIES,
    _HOUR_P,
    _HOURS,
    _PEAK_DOY,
    _PEAK_HEIGHT,
    _PEAK_WIDTH,
    _US_PER_DAY,
    _WEEKLY,
)


@dataclass
class Users:
    """Per user: start/end category interests, country, wholesale flag, order rate and quantity habits."""

    w0: np.ndarray  # (users, categories) interests at the start
    w1: np.ndarray  # ... at the end
    country_names: np.ndarray
    country: np.ndarray  # index into country_names
    wholesale: np.ndarray
    activity: np.ndarray  # expected orders per year
    lines_mean: np.ndarray
    pack: np.ndarray
    qty_mu: np.ndarray  # usual units per line before the item factor
    returner: np.ndarray  # hidden log-odds of returning


def draw_users(rng: np.random.Generator, p: SynthParams) -> Users:
    """Interests (start/end), country, activity, wholesale, quantity habits."""
    n_u, n_c = p.users, p.n_categories
    cat_base = rng.lognormal(0.0, 0.5, size=n_c)
    cat_trend = rng.lognormal(0.0, 0.8, size=n_c)
    w0 = _pick_favourites(rng, n_u, cat_base)
    w1 = (1.0 - p.drift) * w0 + p.drift * _pick_favourites(rng, n_u, cat_base * cat_trend)
    country_names = np.array([c for c, _ in _COUNTRIES], dtype=object)
    country_p = np.array([share for _, share in _COUNTRIES])
    country = rng.choice(len(country_names), size=n_u, p=country_p / country_p.sum())
    wholesale = rng.random(n_u) < p.wholesale_share
    activity = (p.orders_per_year * rng.lognormal(-0.5 * _ACT_SIGMA**2, _ACT_SIGMA, size=n_u)
                * np.where(wholesale, 2.0, 1.0))  # expected orders per year
    lines_mean = np.where(wholesale, 1.0 + rng.gamma(4.0, 2.5, size=n_u), 1.0 + rng.gamma(2.0, 1.5, size=n_u))
    pack = np.where(wholesale, rng.choice(np.array([6, 12, 24]), size=n_u), 1)
    qty_mu = 1.0 + rng.gamma(2.0, 0.6, size=n_u)  # usual units per line before item factor
    returner = rng.normal(0.0, 0.5, size=n_u)
    return Users(w0=w0, w1=w1, country_names=country_names, country=country, wholesale=wholesale,
                 activity=activity, lines_mean=lines_mean, pack=pack, qty_mu=qty_mu, returner=returner)


@dataclass
class Orders:
    """Orders sorted by (user, time): their user, day and timestamp (us), rank within the user, line count."""

    n_orders: np.ndarray  # per user
    day_p: np.ndarray  # per day: share of orders (and of browsing sessions)
    o_user: np.ndarray
    o_day: np.ndarray
    o_ts: np.ndarray
    o_rank: np.ndarray  # 0 = the user's first order
    o_lines: np.ndarray


def draw_orders(rng: np.random.Generator, p: SynthParams, season: np.ndarray, start_us: int, users: Users) -> Orders:
    """A Poisson count per user, days by seasonality, time of day, lines per order."""
    n_u, n_d = p.users, p.days
    activity, lines_mean = users.activity, users.lines_mean
    n_orders = rng.poisson(activity / 365.0 * season.sum())  # Poisson per user-day, summed
    day_p = season / season.sum() if season.sum() > 0 else np.full(n_d, 1.0 / n_d)  # (browsing on closed days)
    o_user = np.repeat(np.arange(n_u), n_orders)
    n_o = o_user.size
    o_day = rng.choice(n_d, size=n_o, p=day_p)
    o_sec = rng.choice(_HOURS, size=n_o, p=_HOUR_P / _HOUR_P.sum()) * 3600 + rng.integers(0, 3000, size=n_o)
    o_ts = start_us + o_day.astype(np.int64) * _US_PER_DAY + o_sec.astype(np.int64) * 1_000_000
    order = np.lexsort((o_ts, o_user))
    o_user, o_day, o_ts = o_user[order], o_day[order], o_ts[order]
    first_of_user = np.r_[True, o_user[1:] != o_user[:-1]] if n_o else np.zeros(0, bool)
    user_first_idx = np.maximum.accumulate(np.where(first_of_user, np.arange(n_o), 0)) if n_o else first_of_user
    o_rank = np.arange(n_o) - user_first_idx  # 0 = user's first order
    o_lines = 1 + rng.poisson(lines_mean[o_user] - 1.0)
    return Orders(n_orders=n_orders, day_p=day_p, o_user=o_user, o_day=o_day, o_ts=o_ts, o_rank=o_rank,
                  o_lines=o_lines)


def _season(p: SynthParams) -> tuple[np.ndarray, np.ndarray]:
    """Per-day order multiplier S(d) (mean 1 over a generic open year) and day dates."""
    days = np.array([p.start + timedelta(days=int(d)) for d in range(p.days)])
    weekly = _WEEKLY.copy()
    if p.closed_weekday is not None:
        weekly[p.closed_weekday] = 0.0
    dow = np.array([d.weekday() for d in days])
    doy = np.array([d.timetuple().tm_yday for d in days])

    def yearly(day_of_year: np.ndarray) -> np.ndarray:
        dist = np.abs(day_of_year - _PEAK_DOY)
        dist = np.minimum(dist, 365 - dist)
        return 1.0 + _PEAK_HEIGHT * np.exp(-0.5 * (dist / _PEAK_WIDTH) ** 2)

    norm = weekly.mean() * yearly(np.arange(1, 366)).mean()
    return weekly[dow] * yearly(doy) / norm, days


def _pick_favourites(rng: np.random.Generator, n_users: int, weights: np.ndarray) -> np.ndarray:
    """Dirichlet interests concentrated on 2-3 categories drawn by `weights` (Gumbel top-k)."""
    n_cat = weights.shape[0]
    keys = np.log(weights)[None, :] + rng.gumbel(size=(n_users, n_cat))
    order = np.argsort(-keys, axis=1)
    k = rng.integers(2, 4, size=n_users)
    alpha = np.full((n_users, n_cat), _ALPHA_BG)
    for j in range(min(3, n_cat)):
        chosen = order[:, j]
        active = j < k
        alpha[np.arange(n_users)[active], chosen[active]] = 3.0 - 0.7 * j
    g = rng.gamma(alpha)
    return g / g.sum(axis=1, keepdims=True)
