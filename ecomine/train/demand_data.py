"""The demand task's training data for a TrainSpec: events -> item x period panel -> leakage-free time cuts.

Sits at the start of `train` for the demand task, as `recommend_data` and `risk_data` do for
theirs: `prepare_demand_data` turns the events into a zero-filled panel
(`data.features.demand_series`) and cuts it by time - test = rolling origins over the last
`eval.test_periods`, validation = origins just before the first test target, training
windows end before the first validation target - with the per-item scale, the fallback
profiles and the calendar. `train.demand_task` (the Task) trains, evaluates and saves on it.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

import numpy as np

from ecomine.specs import SpecError

__all__ = ["DemandData", "prepare_demand_data", "data_key", "fallback_profiles", "PROFILE_GLOBAL", "reads_year_lag"]

PROFILE_GLOBAL = "__global__"


@dataclass
class DemandData:
    """The panel and its time cuts, as numpy (picklable; no polars in the workers)."""

    items: list[str]  # panel items; embedding id = index + 1
    category: list[str | None]  # per panel item
    start: dt.date  # date of period 0
    freq: str
    units: np.ndarray  # [N, T] float32, zero-filled
    price_rel: np.ndarray  # [N, T + 1] float32: log(last known price at origin t / mean price over the context)
    cov: np.ndarray  # [T + horizon, C] calendar features (beyond T: for forecasts from the end)
    fallback: np.ndarray  # [N] bool: fewer than min_history selling periods before the first validation target
    train_pairs: np.ndarray  # [n, 2] (item, origin) training windows
    valid_origins: np.ndarray
    test_origins: np.ndarray
    scale: np.ndarray  # [N] in-sample seasonal-naive MAE over the training part
    profiles_eval: dict[str, np.ndarray]  # category/global -> [season slots, Q] from the training part
    profiles_end: dict[str, np.ndarray]  # the same from the end of the data (what the served model uses)
    other_categories: dict[str, str] = field(default_factory=dict)  # non-panel items with a category
    context_length: int = 0
    horizon: int = 0
    fingerprint: str = ""
    key: str = ""  # the spec fields that shaped these arrays (`data_key`); `adapt` re-prepares on a change
    year_lag: int = 0  # periods one year back that each window's `year_ago` reads (0: the network reads none)
    # the LightGBM baseline's test forecasts by their settings, filled on the driver by `evaluate`: an
    # ensemble run evaluates three times (both members, the mixture) on one data set and fits it once
    baseline_cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_periods(self) -> int:
        return self.units.shape[1]


def _weekly_end(last: dt.date) -> dt.date:
    """Last day of the last complete ISO week up to `last` (a trailing partial week would read as a slump)."""
    return last if last.weekday() == 6 else last - dt.timedelta(days=last.weekday() + 1)


def _price_rel(price: np.ndarray, context: int) -> np.ndarray:
    """log(price known at origin t, i.e. of period t-1 / mean price over [t-context, t)); 0 where unknown."""
    n, T = price.shape
    p = np.where(np.isfinite(price) & (price > 0), price, np.nan)
    csum = np.concatenate([np.zeros((n, 1)), np.nancumsum(p, axis=1)], axis=1)
    ccnt = np.concatenate([np.zeros((n, 1)), np.cumsum(np.isfinite(p), axis=1)], axis=1)
    t = np.arange(T)
    lo = np.clip(t - context, 0, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (csum[:, t] - csum[:, lo]) / (ccnt[:, t] - ccnt[:, lo])
        last = np.concatenate([np.full((n, 1), np.nan), p[:, :-1]], axis=1)
        rel = np.log(last / mean)
    return np.clip(np.nan_to_num(rel, nan=0.0, posinf=0.0, neginf=0.0), -2, 2).astype(np.float32)


def fallback_profiles(units: np.ndarray, category: list[str | None], end: int, window: int, start: dt.date,
                      freq: str, quantiles: list[float]) -> dict[str, np.ndarray]:
    """Empirical quantiles of item-period units per season slot over [end - window, end): per category + global."""
    from ecomine.models.demand import season_length

    m = season_length(freq)
    lo = max(0, end - window)
    t = np.arange(lo, end)
    day0 = (np.datetime64(start, "D").astype(np.int64) + 3) % 7  # weekday of period 0 (0 = Monday)
    slots = (day0 + t) % 7 if m == 7 else np.zeros_like(t)
    cats = np.array([c if c is not None else "" for c in category], dtype=object)
    groups = {PROFILE_GLOBAL: np.ones(len(category), bool)}
    for c in sorted({c for c in category if c is not None}):
        groups[c] = cats == c
    out = {}
    for name, mask in groups.items():
        block = units[mask][:, lo:end]
        prof = np.zeros((m, len(quantiles)))
        for s in range(m):
            vals = block[:, slots == s].ravel()
            if vals.size:
                prof[s] = np.quantile(vals, quantiles)
        out[name] = prof
    return out


def reads_year_lag(spec) -> bool:
    """The network may read a year-back value per step (`model.year_lag` auto/on; a LightGBM forecaster has its
    own features). Whether it does also depends on the log's length: `prepare_demand_data` decides."""
    return spec.model.year_lag != "off" and spec.model.forecaster == "patchtst"


def data_key(spec) -> str:
    """JSON of what `prepare_demand_data` reads from a spec (backbone sizes and LightGBM settings excluded)."""
    m = spec.model
    fields = {k: getattr(m, k) for k in ("freq", "horizon", "context_length", "quantiles", "top_items", "min_history")}
    fields["year_lag"] = spec.model.year_lag if reads_year_lag(spec) else "off"
    ev = m.eval.model_dump(include={"test_periods", "origin_every", "valid_origins", "train_stride", "zero_window_keep"})
    return json.dumps({"data": spec.data.model_dump(mode="json"), **fields, **ev, "seed": spec.optim.seed}, sort_keys=True)


def prepare_demand_data(spec, events=None, fingerprint: str = "") -> DemandData:
    """Events -> panel -> cuts (see the module docstring). Raises ValueError naming the spec field when too short.

    ~90 lines: the preparation steps in their order, each a call; the length is the list."""
    import polars as pl

    from ecomine.data.features import demand_series
    from ecomine.models.demand import calendar_features, period_dates, season_length, year_lag_periods
    from ecomine.train.demand_eval import naive_scale
    from ecomine.train.events import load_training_events

    m, ev_spec = spec.model, spec.model.eval
    if events is None:
        events, fingerprint = load_training_events(spec.data)
    bought = events.filter(pl.col("event") == "purchase")
    if bought.height == 0:
        raise SpecError("data: no purchase events; the demand task needs purchase history")
    first = bought["ts"].min().date()
    last = bought["ts"].max().date()
    if m.freq == "1w":
        first = first - dt.timedelta(days=first.weekday())
        last = _weekly_end(last)
    series = demand_series(events, freq=m.freq, start=first, end=last)
    all_items = series["item_id"].unique(maintain_order=True).to_list()
    T = series.height // max(1, len(all_items))
    season = season_length(m.freq)
    test_periods = ev_spec.test_periods or (56 if m.freq == "1d" else 8)
    every = ev_spec.origin_every or (7 if m.freq == "1d" else 1)
    H, C = m.horizon, m.context_length
    if test_periods < H:
        raise SpecError(f"model.eval.test_periods: {test_periods} periods cannot hold one forecast of model.horizon={H}")
    # test origins: every `every` periods back from the last one whose horizon ends with the data
    test = np.array(sorted(range(T - H, T - test_periods - 1, -every)))
    valid = np.array(sorted(test[0] - H - every * k for k in range(ev_spec.valid_origins)))
    train_end = int(valid[0])  # training targets end before the first validation target
    year_lag = year_lag_periods(m.freq) if reads_year_lag(spec) else 0
    if year_lag and train_end < year_lag:
        if m.year_lag == "on":
            raise SpecError(
                f"model.year_lag: {T} periods ({m.freq}) leave {train_end} before the first validation origin; a value "
                f"one year back needs {year_lag} there (and more to train on); use a longer log or year_lag: auto"
            )
        year_lag = 0  # auto: too short a log for a year back
    last_train_origin = train_end - H
    if last_train_origin < C:
        raise SpecError(
            f"data: {T} periods ({m.freq}) are too few for model.context_length={C} + model.horizon={H} + "
            f"validation and test origins (need at least {C + H + T - train_end}); use more days or a shorter "
            "context / test period"
        )
    units_all = series["units"].to_numpy().reshape(len(all_items), T).astype(np.float32)
    order = np.argsort(-units_all[:, :train_end].sum(1), kind="stable")
    if m.top_items is not None:
        order = order[: m.top_items]
    order = order[units_all[order, :train_end].sum(1) > 0]
    if len(order) == 0:
        raise SpecError("data: no item sold anything before the validation period")
    order = np.sort(order)  # keep item_id order
    items = [all_items[i] for i in order]
    units = units_all[order]
    price = series["avg_price"].to_numpy().reshape(len(all_items), T)[order]
    cat_map: dict[str, str] = {}
    if "category" in events.columns:
        cats = events.filter(pl.col("category").is_not_null()).group_by("item_id").agg(pl.col("category").first())
        cat_map = dict(zip(cats["item_id"].to_list(), cats["category"].to_list()))
    category = [cat_map.get(i) for i in items]
    sold_periods = (units[:, :train_end] > 0).sum(1)
    fallback = sold_periods < m.min_history

    rng = np.random.default_rng(spec.optim.seed)
    origins = np.arange(C, last_train_origin + 1, ev_spec.train_stride)
    pairs = np.stack(np.meshgrid(np.arange(len(items)), origins, indexing="ij"), -1).reshape(-1, 2)
    lo = pairs[:, 1][:, None] + np.arange(-C, H)[None, :]
    zero = units[pairs[:, 0][:, None], lo].sum(1) == 0
    keep = ~zero | (rng.random(len(pairs)) < ev_spec.zero_window_keep)
    pairs = pairs[keep].astype(np.int64)
    start = series["date"][0]
    dates = period_dates(start, T + H, m.freq)
    quantiles = list(m.quantiles)
    return DemandData(
        items=items, category=category, start=start, freq=m.freq, units=units,
        price_rel=_price_rel(np.concatenate([price, np.full((len(items), 1), np.nan)], axis=1), C), cov=calendar_features(dates, m.freq), fallback=fallback,
        train_pairs=pairs, valid_origins=valid.astype(np.int64), test_origins=test.astype(np.int64),
        scale=naive_scale(units, train_end, season),
        profiles_eval=fallback_profiles(units, category, train_end, C, start, m.freq, quantiles),
        profiles_end=fallback_profiles(units, category, T, C, start, m.freq, quantiles),
        other_categories={k: v for k, v in cat_map.items() if k not in set(items)},
        context_length=C, horizon=H, fingerprint=fingerprint, key=data_key(spec),
        year_lag=year_lag,
    )
