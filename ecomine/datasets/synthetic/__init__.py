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

`generate` runs the stages in this order, one module each, all drawing from one
seeded generator (the order of the draws is part of the log): `_catalogue`,
`_people` (users, then orders), `_lines`, `_returns` (returns, then browsing),
`_assemble` (events, then truth). `_vocab` holds the word lists and fixed knobs,
`_params` the parameters and the result, `_io` writing and describing.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

from ecomine.datasets.synthetic._assemble import events_frame, truth_frames
from ecomine.datasets.synthetic._catalogue import build_catalogue
from ecomine.datasets.synthetic._io import describe, repeat_share, write
from ecomine.datasets.synthetic._lines import draw_lines
from ecomine.datasets.synthetic._params import GENERATOR_VERSION, SynthLog, SynthParams
from ecomine.datasets.synthetic._people import _season, draw_orders, draw_users
from ecomine.datasets.synthetic._returns import draw_browsing, draw_returns
from ecomine.datasets.synthetic._vocab import (
    CATEGORY_NAMES,
    RETURN_FACTORS,
    RISKY_CATEGORIES,
    RISKY_COUNTRY,
    _ids,
)

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


def generate(params: SynthParams | None = None) -> SynthLog:
    """Generate a log; deterministic for given params (numpy `default_rng(params.seed)`)."""
    p = params or SynthParams()
    rng = np.random.default_rng(p.seed)
    season, day_dates = _season(p)
    start_us = int(datetime(p.start.year, p.start.month, p.start.day, tzinfo=timezone.utc).timestamp()) * 1_000_000
    cat = build_catalogue(rng, p)
    users = draw_users(rng, p)
    orders = draw_orders(rng, p, season, start_us, users)
    lines = draw_lines(rng, p, cat, users, orders)
    returns = draw_returns(rng, p, start_us, cat, users, orders, lines)
    browsing = draw_browsing(rng, p, start_us, cat, users, orders, lines)
    item_ids, user_ids = _ids("I", p.items, 5), _ids("U", p.users, 5)
    events = events_frame(cat, users, lines, returns, browsing, item_ids, user_ids)
    truth = truth_frames(p, day_dates, season, cat, users, lines, returns, item_ids, user_ids)
    return SynthLog(params=p, events=events, **truth)
