"""Seeded synthetic e-commerce log: the embedded default dataset for demos and tests.

Sits beside the real-data adapters, before `ecomine.data`: it writes canonical
events (see `ecomine.data.schema`) plus the ground truth that produced them, so
tests can check that models recover planted interests, demand and return risk.

What is planted (all of it recorded in `SynthLog`'s truth frames):

- items: a category, a gift-ware title ("VINTAGE RED HEART CANDLE HOLDER") from
  category word lists, a log-normal base price, Zipf-like popularity within the
  category. Items come in small *collections* (shared colour and motif, one sale
  window, equal popularity) with a successor cycle A -> B -> C -> A: after buying
  A a user tends to buy B next. Half the collections are always on sale, the
  others have a launch..end window inside or across the span.
- users: Dirichlet interests concentrated on 2-3 categories that drift linearly
  from a start to an end vector, a country, a heavy-tailed order rate, and a share
  of wholesale users who buy packs of 6-24 at 15 % off.
- purchases: each line is a repeat of an earlier order's line (`repeat_prob`),
  the successor of the previous line (`successor_prob`) or a fresh draw from the
  user's current interests, always among items on sale that day; lines of one
  order share an invoice id ("S000123") and are stamped ~30 s apart in line order.
- time: weekly seasonality (weekdays > Sunday, no orders on `closed_weekday`) and
  a December peak; `item_rates` holds the expected gross units per item and day.
- returns: a line is returned (event `return`, order id "R000045", same user and
  item, 1-60 days later) with a logistic probability from known factors
  (`RETURN_FACTORS`); returns after the span's end are censored, as in real logs.
- browsing: views/carts before some orders and abandoned carts (no order id).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ecomine.data.schema import EVENT_COLUMNS, EVENT_DTYPE, validate_events

__all__ = [
    "SynthParams",
    "SynthLog",
    "generate",
    "write",
    "describe",
    "repeat_share",
    "GENERATOR_VERSION",
    "RETURN_FACTORS",
    "RISKY_COUNTRY",
    "CATEGORY_NAMES",
    "RISKY_CATEGORIES",
]

# Bumped whenever the same params would give a different log (fingerprints should include it).
GENERATOR_VERSION = 1

# --------------------------------------------------------------------------- #
# Vocabulary: category -> (title nouns, category adjectives, log-price offset, risky)
# --------------------------------------------------------------------------- #
_CATEGORIES: tuple[tuple[str, tuple[str, ...], tuple[str, ...], float, bool], ...] = (
    ("candles", ("CANDLE HOLDER", "TEALIGHT HOLDER", "SCENTED CANDLE", "LANTERN", "CANDLE POT"),
     ("SCENTED", "GLASS", "MOROCCAN", "ZINC", "FROSTED"), 0.0, False),
    ("lights", ("STRING LIGHTS", "NIGHT LIGHT", "FAIRY LIGHTS", "LED GLOBE", "TABLE LAMP"),
     ("BATTERY", "GLOW", "LED", "WIRELESS", "BRIGHT"), 0.5, True),
    ("kitchen", ("MUG", "TEA TOWEL", "CAKE STAND", "APRON", "JAM JAR"),
     ("ENAMEL", "CERAMIC", "BONE CHINA", "GINGHAM", "TIN"), 0.1, False),
    ("bags", ("JUMBO BAG", "SHOPPER", "LUNCH BAG", "TOTE BAG", "CHARLOTTE BAG"),
     ("JUMBO", "RECYCLED", "WOVEN", "CANVAS", "STRAW"), 0.0, False),
    ("decorations", ("HANGING HEART", "BAUBLE", "WREATH", "BUNTING", "GARLAND"),
     ("FELT", "GLITTER", "WICKER", "PAPER", "FESTIVE"), -0.3, False),
    ("cards", ("GREETING CARD", "WRAPPING PAPER", "GIFT TAG", "NOTEBOOK", "ENVELOPES"),
     ("PACK OF 12", "EMBOSSED", "FOLDED", "PRINTED", "KRAFT"), -0.8, False),
    ("jewellery", ("NECKLACE", "BRACELET", "EARRINGS", "TRINKET BOX", "HAIR CLIP"),
     ("DIAMANTE", "BEADED", "SILVER", "CRYSTAL", "PEARL"), 0.6, True),
    ("clocks", ("ALARM CLOCK", "WALL CLOCK", "KITCHEN CLOCK", "DOORSTOP", "WALL MIRROR"),
     ("BAKELIKE", "ANTIQUE", "CHROME", "WOODEN", "IRON"), 0.9, False),
    ("toys", ("SKITTLES", "JIGSAW", "SPINNING TOP", "DOLLY", "PLAYHOUSE"),
     ("WOODEN", "MINI", "TOY", "CHILDRENS", "SPACEBOY"), -0.2, False),
    ("garden", ("WATERING CAN", "PLANTER", "BIRD FEEDER", "GARDEN SIGN", "SEED TRAY"),
     ("GALVANISED", "TERRACOTTA", "RUSTIC", "OUTDOOR", "HANGING"), 0.3, False),
    ("furniture", ("SIDE TABLE", "CABINET", "WALL SHELF", "STOOL", "COAT RACK"),
     ("PAINTED", "FOLDING", "DRAWER", "SHABBY", "FRENCH"), 1.6, True),
    ("baking", ("CAKE CASES", "BAKING SET", "COOKIE CUTTER", "BISCUIT TIN", "PARTY CUPS"),
     ("SET OF 60", "PARTY", "PASTEL", "FAIRY CAKE", "NOVELTY"), -0.4, False),
    ("textiles", ("CUSHION COVER", "THROW", "DOORMAT", "HOT WATER BOTTLE", "QUILT"),
     ("KNITTED", "PATCHWORK", "VELVET", "CHENILLE", "FLEECE"), 0.7, False),
    ("stationery", ("PENCIL CASE", "STICKER SHEET", "ERASER", "RULER", "MEMO BOARD"),
     ("SCHOOL", "RETRO", "MAGNETIC", "SCENTED", "TINY"), -0.6, False),
)
_GENERIC_NOUNS = ("GIFT SET", "ORNAMENT", "KEEPSAKE", "TRINKET", "DISPLAY")
_GENERAL_ADJECTIVES = ("VINTAGE", "SET OF 3", "SMALL", "LARGE", "RETRO", "REGENCY", "HOME SWEET HOME")
_COLOURS = ("RED", "PINK", "BLUE", "WHITE", "IVORY", "GREEN", "CREAM", "BLACK", "GOLD", "PASTEL")
_MOTIFS = ("HEART", "STAR", "SPOTTY", "BIRD", "ROSE", "DOILY", "SKULL", "POLKADOT", "FLORAL", "BUTTERFLY")

CATEGORY_NAMES: tuple[str, ...] = tuple(c[0] for c in _CATEGORIES)
RISKY_CATEGORIES: tuple[str, ...] = tuple(c[0] for c in _CATEGORIES if c[4])

# Country -> share of users. One country carries a higher return rate.
_COUNTRIES: tuple[tuple[str, float], ...] = (
    ("United Kingdom", 0.82), ("Germany", 0.05), ("France", 0.05), ("EIRE", 0.03),
    ("Netherlands", 0.02), ("Spain", 0.02), ("Belgium", 0.01),
)
RISKY_COUNTRY = "France"

# Log-odds added to a purchase line's return probability for each planted factor.
# The intercept is solved so that the mean probability equals `return_rate`;
# each user also carries a hidden N(0, 0.5) log-odds effect.
RETURN_FACTORS: dict[str, float] = {
    "high_price": 1.0,  # item base price in the top 20 % of the catalogue
    "bulk": 1.2,  # line quantity 4-8x the user's usual for that item
    "risky_category": 1.0,  # category in RISKY_CATEGORIES
    "new_user": 0.8,  # the user's first or second order
    "risky_country": 1.0,  # user's country is RISKY_COUNTRY
}

_WEEKLY = np.array([1.10, 1.15, 1.10, 1.15, 0.90, 0.45, 0.65])  # Mon..Sun order multipliers
_PEAK_DOY, _PEAK_WIDTH, _PEAK_HEIGHT = 340, 16.0, 1.3  # December peak (~Dec 6)
_HOURS = np.arange(7, 20)
_HOUR_P = np.exp(-0.5 * ((_HOURS - 12.5) / 2.8) ** 2)
_BULK_P, _BULK_LOW, _BULK_HIGH = 0.04, 4, 8  # bulk multiplier uniform on 4..8
_US_PER_DAY = 86_400_000_000
_ZIPF = 0.8  # popularity exponent over collections within a category
_ALPHA_BG = 0.2  # Dirichlet concentration on categories outside a user's favourites
_ACT_SIGMA = 0.6  # log-sd of users' order rates (heavy tail)
_CORE_SHARE = 0.5  # share of collections on sale all the time (others: a launch..end window)


class SynthParams(BaseModel):
    """Sizes and knobs of the synthetic log; the same params give the same log."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    users: int = Field(1000, ge=1, description="number of users")
    items: int = Field(300, ge=1, description="number of items")
    days: int = Field(365, ge=1, description="length of the log in days")
    seed: int = Field(0, ge=0, description="numpy default_rng seed")
    start: date = Field(date(2023, 1, 1), description="first day of the log (UTC)")
    n_categories: int = Field(12, ge=1, le=60, description="number of item categories")
    orders_per_year: float = Field(6.0, gt=0, description="mean orders per user per year")
    repeat_prob: float = Field(0.08, ge=0, le=1, description="P(line repeats an earlier order's line)")
    successor_prob: float = Field(0.3, ge=0, le=1, description="P(line is the successor of the previous line)")
    return_rate: float = Field(0.05, ge=0, lt=1, description="mean return probability of a purchase line")
    wholesale_share: float = Field(0.05, ge=0, le=1, description="share of wholesale users")
    drift: float = Field(0.5, ge=0, le=1, description="how far interests move from start to end")
    browse_rate: float = Field(0.25, ge=0, le=1, description="share of orders preceded by views/carts")
    closed_weekday: int | None = Field(5, ge=0, le=6, description="weekday without orders (0=Mon), or null")

    @model_validator(mode="before")
    @classmethod
    def _fewer_categories_for_few_items(cls, data: Any) -> Any:
        # `--items 5` without an explicit n_categories: use one category per item
        if isinstance(data, dict) and "n_categories" not in data and isinstance(data.get("items"), int):
            if 1 <= data["items"] < cls.model_fields["n_categories"].default:
                data = {**data, "n_categories": data["items"]}
        return data

    @model_validator(mode="after")
    def _check(self) -> "SynthParams":
        if self.items < self.n_categories:
            raise ValueError(
                f"items={self.items} must be >= n_categories={self.n_categories} (one item per category at least)"
            )
        if self.repeat_prob + self.successor_prob > 1:
            raise ValueError(
                f"repeat_prob + successor_prob = {self.repeat_prob + self.successor_prob} must be <= 1"
            )
        return self


@dataclass(frozen=True)
class SynthLog:
    """A generated log: canonical `events` plus the ground truth behind them.

    - `events`: canonical events + `country`, `category` (validate_events passes).
    - `user_interests`: user_id, category, phase ("start" | "end"), date, weight.
    - `item_rates`: item_id, date, expected_units (expected gross purchased units).
    - `return_propensity`: one row per purchase line: order_id, item_id, user_id,
      probability, the factor flags of RETURN_FACTORS, returned (bool, observed).
    - `items`: item_id, category, title, base_price, popularity (within category,
      while on sale), collection, successor_item_id, on_sale_from / on_sale_to
      (first / last day on sale; null where the window reaches past the span).
    - `users`: user_id, country, wholesale, orders_per_year.
    - `returns_truth`: return order_id, item_id, user_id, quantity,
      purchase_order_id (the order the return cancels).
    """

    params: SynthParams
    events: pl.DataFrame
    user_interests: pl.DataFrame
    item_rates: pl.DataFrame
    return_propensity: pl.DataFrame
    items: pl.DataFrame
    users: pl.DataFrame
    returns_truth: pl.DataFrame

    def truth(self) -> dict[str, pl.DataFrame]:
        """The truth frames by name (as written under `truth/`)."""
        return {
            "user_interests": self.user_interests,
            "item_rates": self.item_rates,
            "return_propensity": self.return_propensity,
            "items": self.items,
            "users": self.users,
            "returns_truth": self.returns_truth,
        }


# --------------------------------------------------------------------------- #
# Building blocks
# --------------------------------------------------------------------------- #
def _category_table(n: int) -> list[tuple[str, tuple[str, ...], tuple[str, ...], float, bool]]:
    table = list(_CATEGORIES[:n])
    for k in range(len(table), n):
        table.append((f"category_{k + 1:02d}", _GENERIC_NOUNS, _GENERAL_ADJECTIVES, 0.0, False))
    return table


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


def _ids(prefix: str, n: int, width: int = 6) -> np.ndarray:
    width = max(width, len(str(n)))
    return np.array([f"{prefix}{i:0{width}d}" for i in range(1, n + 1)], dtype=object)


# --------------------------------------------------------------------------- #
# The generator
# --------------------------------------------------------------------------- #
def generate(params: SynthParams | None = None) -> SynthLog:
    """Generate a log; deterministic for given params (numpy `default_rng(params.seed)`)."""
    p = params or SynthParams()
    rng = np.random.default_rng(p.seed)
    n_u, n_i, n_c, n_d = p.users, p.items, p.n_categories, p.days
    table = _category_table(n_c)
    cat_names = np.array([t[0] for t in table], dtype=object)
    cat_risky = np.array([t[4] for t in table])
    season, day_dates = _season(p)
    start_us = int(datetime(p.start.year, p.start.month, p.start.day, tzinfo=timezone.utc).timestamp()) * 1_000_000

    # ---- items: category blocks, collections with successor cycles, Zipf popularity
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

    # ---- users: interests (start/end), country, activity, wholesale, quantity habits
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

    # ---- orders: Poisson count per user, days by seasonality, time of day
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

    # ---- lines: mechanism draws vectorised, the item sequence in one pass
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

    # ---- order ids: invoice-like, in time order
    chrono = np.argsort(o_ts, kind="stable")
    o_id = np.empty(n_o, dtype=object)
    o_id[chrono] = _ids("S", n_o)

    # ---- returns: logistic propensity from known factors, intercept solved for return_rate
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

    # ---- browsing: views (+ carts) before some orders, abandoned carts
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

    # ---- assemble canonical events
    item_ids = _ids("I", n_i, 5)
    user_ids = _ids("U", n_u, 5)
    parts = [
        # purchases
        dict(u=l_user, i=items_seq, ts=l_ts, ev="purchase", q=qty, pr=l_price, oid=o_id[l_order]),
        # returns
        dict(u=l_user[ret_idx], i=items_seq[ret_idx], ts=r_ts[ret_idx],
             ev="return", q=r_qty[ret_idx], pr=l_price[ret_idx], oid=ro_id[ret_inv]),
        # views / carts before browsed orders
        dict(u=l_user[b_idx], i=items_seq[b_idx], ts=l_ts[b_idx] - 900_000_000, ev="view",
             q=np.ones(b_idx.size, np.int64), pr=l_price[b_idx], oid=None),
        dict(u=l_user[b_idx][cart_b], i=items_seq[b_idx][cart_b], ts=l_ts[b_idx][cart_b] - 450_000_000,
             ev="cart", q=qty[b_idx][cart_b], pr=l_price[b_idx][cart_b], oid=None),
        # abandoned sessions
        dict(u=ab_user, i=ab_item, ts=ab_ts, ev="view", q=np.ones(ab_user.size, np.int64),
             pr=base_price[ab_item], oid=None),
        dict(u=ab_user[ab_cart], i=ab_item[ab_cart], ts=ab_ts[ab_cart] + 20_000_000, ev="cart",
             q=np.ones(int(ab_cart.sum()), np.int64), pr=base_price[ab_item[ab_cart]], oid=None),
    ]
    cols = {key: np.concatenate([np.asarray(part[key]) for part in parts]) for key in ("u", "i", "ts", "q", "pr")}
    kind = np.concatenate([np.full(len(part["u"]), part["ev"], dtype=object) for part in parts])
    oid = np.concatenate([part["oid"] if part["oid"] is not None else np.full(len(part["u"]), None, dtype=object)
                          for part in parts])
    order = np.lexsort((kind.astype(str), cols["i"], cols["u"], cols["ts"]))
    u, i = cols["u"][order].astype(np.int64), cols["i"][order].astype(np.int64)
    ev = pl.DataFrame({
        "user_id": pl.Series(user_ids[u], dtype=pl.String),
        "item_id": pl.Series(item_ids[i], dtype=pl.String),
        "ts": pl.Series(cols["ts"][order].astype(np.int64)).cast(pl.Datetime("us", "UTC")),
        "event": pl.Series(kind[order], dtype=pl.String).cast(EVENT_DTYPE),
        "quantity": cols["q"][order].astype(np.int64),
        "price": cols["pr"][order].astype(np.float64),
        "order_id": pl.Series(oid[order].tolist(), dtype=pl.String),
        "item_text": pl.Series(np.asarray(titles, dtype=object)[i], dtype=pl.String),
        "linked_order_id": pl.Series([None] * u.size, dtype=pl.String),
        "country": pl.Series(country_names[country[u]], dtype=pl.String),
        "category": pl.Series(cat_names[item_cat[i]], dtype=pl.String),
    })
    events = validate_events(ev.select([*EVENT_COLUMNS, "country", "category"]))

    # ---- truth frames
    d_first, d_last = day_dates[0], day_dates[-1]
    user_interests = pl.concat([
        pl.DataFrame({
            "user_id": np.repeat(user_ids, n_c).tolist(),
            "category": np.tile(cat_names, n_u).tolist(),
            "phase": [phase] * (n_u * n_c),
            "date": [d] * (n_u * n_c),
            "weight": w.reshape(-1),
        }, schema={"user_id": pl.String, "category": pl.String, "phase": pl.String,
                   "date": pl.Date, "weight": pl.Float64})
        for phase, d, w in (("start", d_first, w0), ("end", d_last, w1))
    ])
    g1 = activity / 365.0 * lines_mean * pack * (1.0 + _BULK_P * (0.5 * (_BULK_LOW + _BULK_HIGH) - 1.0))
    rates = _expected_units(p, season, w0, w1, fresh_p, avail, item_cat, activity / 365.0,
                            g1, g1 * (qty_mu - 1.0), qty_factor)  # (days, items)
    dates = pl.date_range(day_dates[0], day_dates[-1], eager=True)
    item_rates = pl.DataFrame({
        "item_id": pl.Series(np.repeat(item_ids, n_d), dtype=pl.String),
        "date": dates.gather(np.tile(np.arange(n_d), n_i)),
        "expected_units": rates.T.reshape(-1),
    })
    return_propensity = pl.DataFrame({
        "order_id": o_id[l_order].tolist(),
        "item_id": item_ids[items_seq].tolist(),
        "user_id": user_ids[l_user].tolist(),
        "probability": prob,
        "high_price": f_price, "bulk": bulk, "risky_category": f_cat,
        "new_user": f_new, "risky_country": f_country,
        "returned": observed,
    }, schema_overrides={"order_id": pl.String, "item_id": pl.String, "user_id": pl.String})
    items_truth = pl.DataFrame({
        "item_id": item_ids.tolist(),
        "category": cat_names[item_cat].tolist(),
        "title": titles,
        "base_price": base_price,
        "popularity": pop,
        "collection": collection,
        "successor_item_id": item_ids[successor].tolist(),
        "on_sale_from": dates.gather(np.clip(avail_from, 0, n_d - 1)).to_numpy(),
        "on_sale_to": dates.gather(np.clip(avail_to - 1, 0, n_d - 1)).to_numpy(),
    }, schema_overrides={"item_id": pl.String, "category": pl.String, "successor_item_id": pl.String}
    ).with_columns(  # null: on sale before the start / after the end of the log
        pl.when(pl.Series(avail_from > 0)).then(pl.col("on_sale_from")).alias("on_sale_from"),
        pl.when(pl.Series(avail_to < n_d)).then(pl.col("on_sale_to")).alias("on_sale_to"),
    )
    users_truth = pl.DataFrame({
        "user_id": user_ids.tolist(),
        "country": country_names[country].tolist(),
        "wholesale": wholesale,
        "orders_per_year": activity,
    }, schema_overrides={"user_id": pl.String, "country": pl.String})
    returns_truth = pl.DataFrame({
        "order_id": ro_id[ret_inv].tolist(),
        "item_id": item_ids[items_seq[ret_idx]].tolist(),
        "user_id": user_ids[l_user[ret_idx]].tolist(),
        "quantity": r_qty[ret_idx].astype(np.int64),
        "purchase_order_id": o_id[l_order[ret_idx]].tolist(),
    }, schema={"order_id": pl.String, "item_id": pl.String, "user_id": pl.String,
               "quantity": pl.Int64, "purchase_order_id": pl.String}).sort("order_id", "item_id")
    return SynthLog(
        params=p, events=events, user_interests=user_interests, item_rates=item_rates,
        return_propensity=return_propensity, items=items_truth, users=users_truth,
        returns_truth=returns_truth,
    )


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


def _expected_units(
    p: SynthParams, season: np.ndarray, w0: np.ndarray, w1: np.ndarray, fresh_p: np.ndarray,
    avail: np.ndarray, item_cat: np.ndarray, lam: np.ndarray, g1: np.ndarray, g2: np.ndarray,
    qty_factor: np.ndarray, chunk: int = 512,
) -> np.ndarray:
    """Expected gross purchased units per (day, item), following the line mechanisms.

    For user u on day d a fresh line is item i with F = w_u(d)[cat i] * fresh_p[d, i];
    a successor keeps the previous line's distribution (collections share popularity
    and sale window); a repeat draws from the user's earlier lines, kept as the
    season-weighted sum H (items still on sale, else a fresh draw). With ph = P(user
    ordered before d), rho = r / (1 - s) and sigma = share of H on sale, a line is
    m = F (1 - ph rho sigma) + ph rho H*on / sum(season before d), and the day's units
    are season(d) * sum_u m_u (g1_u + g2_u * qty_factor). Cost ~ users * items * days.
    einsum, not `@`: BLAS threads spin badly on a busy 2-core machine for these small products.
    """
    n_d, n_i = fresh_p.shape
    rho = p.repeat_prob / (1.0 - p.successor_prob) if p.successor_prob < 1 else 0.0
    rates = np.zeros((n_d, n_i))
    for lo in range(0, w0.shape[0], chunk):
        sl = slice(lo, lo + chunk)
        cw0, cdw, lam_c = w0[sl], w1[sl] - w0[sl], lam[sl]
        g = np.stack([g1[sl], g2[sl]], axis=1)  # (users, 2)
        # H: season-weighted sum of m over earlier days, kept only for items on sale
        # (a sale window is one interval: an item that left the shop never comes back)
        hist = np.zeros((cw0.shape[0], n_i))
        seen = 0.0
        on_before = np.zeros(n_i, dtype=bool)
        for d in range(n_d):
            if season[d] <= 0:
                continue
            ended = on_before & ~avail[d]
            if ended.any():
                hist[:, ended] = 0.0
            on_before = avail[d]
            w = cw0 + ((d + 0.5) / n_d) * cdw  # (users, categories)
            if seen > 0:
                eta = (1.0 - np.exp(-lam_c * seen)) * rho / seen  # weight of H (on sale) in m
                kappa = 1.0 - eta * hist.sum(axis=1)  # weight of F in m
            else:
                eta, kappa = np.zeros_like(lam_c), np.ones_like(lam_c)
            # units: fresh part through categories, repeat part through H
            fresh_k = np.einsum("uc,u,uk->ck", w, kappa, g)  # (categories, 2)
            units = fresh_p[d] * (fresh_k[item_cat, 0] + fresh_k[item_cat, 1] * qty_factor)
            if seen > 0:
                units += np.einsum("u,ui->i", g[:, 0] * eta, hist)
                units += np.einsum("u,ui->i", g[:, 1] * eta, hist) * qty_factor
                hist *= (1.0 + season[d] * eta)[:, None]  # H += season * m, repeat part
            rates[d] += season[d] * units
            hist += ((season[d] * kappa)[:, None] * w)[:, item_cat] * fresh_p[d]  # fresh part
            seen += season[d]
    return rates


# --------------------------------------------------------------------------- #
# Writing and describing
# --------------------------------------------------------------------------- #
def write(log: SynthLog, out_dir: str) -> dict[str, str]:
    """Write `events.parquet`, `truth/<name>.parquet` and `params.json` under `out_dir`.

    `out_dir` is a path, file:// or s3:// URI (through `ecomine.storage`; each file is
    written atomically). Returns name -> written URI: "events", "params" and each truth frame.
    """
    from ecomine import storage

    written: dict[str, str] = {}
    frames = {"events": ("events.parquet", log.events)}
    frames.update({name: (f"truth/{name}.parquet", df) for name, df in log.truth().items()})
    for name, (rel, df) in frames.items():
        uri = storage.join(out_dir, rel)
        storage.write_parquet(uri, df)
        written[name] = uri
    uri = storage.join(out_dir, "params.json")
    storage.write_json(uri, {"generator": "ecomine.datasets.synthetic", "generator_version": GENERATOR_VERSION,
                             **log.params.model_dump(mode="json")})
    written["params"] = uri
    return written


def repeat_share(events: pl.DataFrame) -> float:
    """Share of purchase lines whose item the same user bought in an earlier order.

    Measured this way the real Online Retail 2010-2011 log gives 0.31.
    """
    buys = events.filter(pl.col("event") == "purchase").select("user_id", "item_id", "order_id", "ts")
    if buys.is_empty():
        return 0.0
    first = buys.group_by("user_id", "item_id").agg(
        pl.col("order_id").sort_by("ts").first().alias("first_order_id"))
    x = buys.join(first, on=["user_id", "item_id"])
    return float((x["order_id"] != x["first_order_id"]).mean())


def describe(log: SynthLog) -> dict[str, Any]:
    """One-line summary: rows, users, items, orders, events by type, repeat share, return rate, span."""
    ev = log.events
    counts = ev.group_by("event").len().sort("event")
    by_type = {str(e): int(n) for e, n in counts.iter_rows()}
    n_buy = by_type.get("purchase", 0)
    return {
        "rows": ev.height,
        "users": ev["user_id"].n_unique(),
        "items": ev["item_id"].n_unique(),
        "orders": ev.filter(pl.col("event") == "purchase")["order_id"].n_unique(),
        "events": by_type,
        "repeat_share": round(repeat_share(ev), 4),
        "return_rate": round(log.returns_truth.height / n_buy, 4) if n_buy else 0.0,
        "span": [ev["ts"].min().isoformat(), ev["ts"].max().isoformat()] if ev.height else None,
    }
