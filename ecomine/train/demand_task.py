"""The demand task: item x period unit series -> PatchTST quantile forecaster, through the shared path.

Implements `ecomine.train.tasks.Task` for `task: demand`. `prepare` turns the
events into a zero-filled panel (`data.features.demand_series`) and cuts it by
time, leakage-free: test = rolling origins over the last `eval.test_periods`
(each forecasts `horizon` periods from the actual history up to the origin, no
refit), validation = origins just before the first test target, training
windows (context, horizon) end before the first validation target. Items with
too little history are forecast by a category/global profile and flagged.

`model.forecaster: lightgbm` fits `models.demand_lightgbm` on the same training
windows instead (`fit_lightgbm`, called by the runner without Ray Train); its
`predict` takes the network's window arrays, so validation, evaluation, saving
and the ensemble build below treat both forecasters alike.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ecomine.specs import DemandLightGBMSpec, SpecError
from ecomine.train.demand_eval import MODEL_NAMES

__all__ = ["DemandData", "DemandTask", "TASK", "prepare_demand_data", "data_key", "demand_config", "lightgbm_config",
           "fit_lightgbm", "model_name", "fallback_profiles", "PROFILE_GLOBAL",
           "UNCALIBRATED", "fit_intervals"]

PROFILE_GLOBAL = "__global__"
UNCALIBRATED = "_uncalibrated"  # suffix of the report row of the model's quantiles before calibration


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


def data_key(spec) -> str:
    """JSON of what `prepare_demand_data` reads from a spec (backbone sizes and LightGBM settings excluded)."""
    m = spec.model
    fields = {k: getattr(m, k) for k in ("freq", "horizon", "context_length", "quantiles", "top_items", "min_history")}
    ev = m.eval.model_dump(include={"test_periods", "origin_every", "valid_origins", "train_stride", "zero_window_keep"})
    return json.dumps({"data": spec.data.model_dump(mode="json"), **fields, **ev, "seed": spec.optim.seed}, sort_keys=True)


def prepare_demand_data(spec, events=None, fingerprint: str = "") -> DemandData:
    """Events -> panel -> cuts (see the module docstring). Raises ValueError naming the spec field when too short."""
    import polars as pl

    from ecomine.data.features import demand_series
    from ecomine.models.demand import calendar_features, period_dates, season_length
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
    )


def demand_config(spec, n_items: int):
    from ecomine.models.demand import DemandConfig

    m = spec.model
    return DemandConfig(
        n_items=n_items, horizon=m.horizon, context_length=m.context_length, quantiles=list(m.quantiles),
        freq=m.freq, d_model=m.d_model, layers=m.layers, heads=m.heads, patch_length=m.patch_length,
        patch_stride=m.patch_stride, dropout=m.dropout, item_dim=m.item_dim, head_hidden=m.head_hidden,
        item_dropout=m.item_dropout,
    )


def lightgbm_config(spec, n_items: int):
    """The `LightGBMDemandConfig` of a spec with `model.forecaster: lightgbm` (unset `model.lightgbm`: defaults)."""
    from ecomine.models.demand import season_length
    from ecomine.models.demand_lightgbm import LightGBMDemandConfig

    m = spec.model
    settings = (m.lightgbm or DemandLightGBMSpec()).model_dump()
    return LightGBMDemandConfig(n_items=n_items, horizon=m.horizon, context_length=m.context_length,
                                quantiles=list(m.quantiles), freq=m.freq, season=season_length(m.freq),
                                seed=spec.optim.seed, **settings)


def fit_lightgbm(spec, data: DemandData):
    """A `LightGBMForecaster` fitted on the training windows (the PatchTST network's, targets before validation)."""
    from ecomine.models.demand_lightgbm import fit_lightgbm_forecaster

    pairs = data.train_pairs
    arrays = _window_arrays(data, pairs[:, 0], pairs[:, 1], data.context_length, data.horizon)
    target = data.units[pairs[:, 0][:, None], pairs[:, 1][:, None] + np.arange(data.horizon)[None, :]]
    return fit_lightgbm_forecaster(lightgbm_config(spec, len(data.items)), **arrays, target=target)


def model_name(spec) -> str:
    """The report row of the spec's own model: `patchtst`, or `lightgbm_forecaster` (the `lightgbm` row is the baseline)."""
    return MODEL_NAMES[spec.model.forecaster]


def _window_arrays(d: DemandData, items: np.ndarray, origins: np.ndarray, C: int, H: int) -> dict[str, np.ndarray]:
    past = d.units[items[:, None], origins[:, None] + np.arange(-C, 0)[None, :]]
    return {
        "past": past,
        "item": items + 1,
        "future_cov": d.cov[origins[:, None] + np.arange(H)[None, :]],
        "price_rel": d.price_rel[items, origins],
    }


def _model_forecasts(model, d: DemandData, origins: np.ndarray, spec, profiles, device="cpu",
                     *, calibrated: bool = True) -> np.ndarray:
    """[N, O, H, Q] forecasts at `origins`: the network for model items (through the model's interval
    calibration where it carries one, unless `calibrated=False`), the profile for fallback ones."""
    from ecomine.models.demand import profile_forecast

    C, H = spec.model.context_length, spec.model.horizon
    N = len(d.items)
    items = np.repeat(np.arange(N), len(origins))
    orig = np.tile(origins, N)
    arrays = _window_arrays(d, items, orig, C, H)
    pred = model.predict(**arrays, device=device).reshape(N, len(origins), H, -1).astype(np.float64)
    shift = getattr(model, "intervals", None) if calibrated else None
    if shift is not None:
        keep = ~d.fallback
        pred[keep] = shift.apply(pred[keep], d.scale[keep])
    day0 = (np.datetime64(d.start, "D").astype(np.int64) + 3) % 7
    for i in np.flatnonzero(d.fallback):
        prof = profiles.get(d.category[i]) if d.category[i] is not None else None
        prof = profiles[PROFILE_GLOBAL] if prof is None else prof
        for k, o in enumerate(origins):
            slot = int((day0 + o) % 7) if d.freq == "1d" else 0
            pred[i, k] = profile_forecast(prof, slot, H, d.freq)
    return np.maximum(np.nan_to_num(pred, nan=0.0), 0.0)


def _actuals(d: DemandData, origins: np.ndarray, H: int) -> np.ndarray:
    return d.units[:, origins[:, None] + np.arange(H)[None, :]]


def fit_intervals(model, d: DemandData, spec):
    """The conformal shifts of the model's quantiles on the validation origins (model items only), or None
    where the spec asks for none; a model that already carries its own (a loaded version) keeps them."""
    from ecomine.models.demand_intervals import fit_quantile_shift

    if spec.model.intervals != "conformal":
        return None
    if getattr(model, "intervals", None) is not None:
        return model.intervals
    keep = ~d.fallback
    if not keep.any():  # every item forecast by a profile: nothing of the network's to calibrate
        return None
    f = _model_forecasts(model, d, d.valid_origins, spec, d.profiles_eval, calibrated=False)
    y = _actuals(d, d.valid_origins, spec.model.horizon)
    return fit_quantile_shift(f[keep], y[keep], d.scale[keep], list(spec.model.quantiles))


class DemandTask:
    name = "demand"

    def prepare(self, spec) -> DemandData:
        return prepare_demand_data(spec)

    def adapt(self, data: DemandData, spec) -> DemandData:
        # the panel and its cuts depend on horizon, context, freq, items...: a campaign searching
        # one of those re-prepares (seconds); searching backbone sizes or lr shares the data
        return data if data.key == data_key(spec) else prepare_demand_data(spec)

    def driver_init(self, spec, data: DemandData):
        return None

    def build_model(self, spec, data: DemandData, init):
        from ecomine.models.demand import DemandForecastModel

        return DemandForecastModel(demand_config(spec, len(data.items)))

    def num_examples(self, data: DemandData) -> int:
        return len(data.train_pairs)

    def batch(self, data: DemandData, index: np.ndarray, device) -> dict[str, Any]:
        import torch

        pairs = data.train_pairs[index]
        C, H = data.context_length, data.horizon
        arrays = _window_arrays(data, pairs[:, 0], pairs[:, 1], C, H)
        arrays["target"] = data.units[pairs[:, 0][:, None], pairs[:, 1][:, None] + np.arange(H)[None, :]]
        dtypes = {"item": torch.long}
        return {k: torch.as_tensor(np.ascontiguousarray(v), dtype=dtypes.get(k, torch.float32)).to(device)
                for k, v in arrays.items()}

    def validate(self, model, data: DemandData, spec, device) -> dict[str, float]:
        import torch

        from ecomine.train.demand_eval import forecast_metrics

        H = spec.model.horizon
        f = _model_forecasts(model, data, data.valid_origins, spec, data.profiles_eval, device=device)
        res = forecast_metrics(_actuals(data, data.valid_origins, H), f, list(spec.model.quantiles), data.scale)
        if not isinstance(model, torch.nn.Module):  # LightGBM has no training-scale loss: its scaled pinball
            return {"loss": res["pinball"], "pinball": res["pinball"], "wape": res["wape"], "mase": res["mase"],
                    "coverage": res["coverage"]}
        # loss: the training objective (pinball in the model's per-window scale) on the validation windows
        N = len(data.items)
        items = np.repeat(np.arange(N), len(data.valid_origins))
        orig = np.tile(data.valid_origins, N)
        arrays = _window_arrays(data, items, orig, spec.model.context_length, H)
        arrays["target"] = _actuals(data, data.valid_origins, H).reshape(-1, H)
        batch = {k: torch.as_tensor(np.ascontiguousarray(v), dtype=torch.long if k == "item" else torch.float32,
                                    device=device) for k, v in arrays.items()}
        loss = float(model(**batch))
        return {"loss": loss, "pinball": res["pinball"], "wape": res["wape"], "mase": res["mase"],
                "coverage": res["coverage"]}

    def evaluate(self, model, data: DemandData, spec) -> dict[str, Any]:
        from ecomine.models.demand import season_length
        from ecomine.train.demand_eval import forecast_metrics, lightgbm_forecasts, moving_average, seasonal_naive

        m, ev = spec.model, spec.model.eval
        H, qs, origins = m.horizon, list(m.quantiles), data.test_origins
        season = season_length(m.freq)
        y = _actuals(data, origins, H)

        def point(p: np.ndarray) -> np.ndarray:
            return np.repeat(p[..., None], len(qs), axis=-1)

        model.intervals = fit_intervals(model, data, spec)  # carried on to `save` and the version
        f = _model_forecasts(model, data, origins, spec, data.profiles_eval)
        name = model_name(spec)
        results: dict[str, Any] = {name: forecast_metrics(y, f, qs, data.scale)}
        results[name].update(n_items=len(data.items), n_fallback=int(data.fallback.sum()),
                             n_origins=len(origins), horizon=H, freq=m.freq)
        if model.intervals is not None:  # the same model before calibration, for the before/after
            raw = _model_forecasts(model, data, origins, spec, data.profiles_eval, calibrated=False)
            results[f"{name}{UNCALIBRATED}"] = forecast_metrics(y, raw, qs, data.scale)
        results["zero"] = forecast_metrics(y, np.zeros((*y.shape, len(qs))), qs, data.scale, point_only=True)
        results["seasonal_naive"] = forecast_metrics(y, point(seasonal_naive(data.units, origins, H, season)),
                                                     qs, data.scale, point_only=True)
        window = 28 if m.freq == "1d" else 4
        results[f"moving_average_{window}"] = forecast_metrics(
            y, point(moving_average(data.units, origins, H, window)), qs, data.scale, point_only=True)
        if ev.lightgbm:
            lgb = lightgbm_forecasts(data.units, data.price_rel, data.cov, data.train_pairs, origins, H, season, qs,
                                     rounds=ev.lightgbm_rounds, max_rows=ev.lightgbm_max_rows, seed=spec.optim.seed)
            results["lightgbm"] = forecast_metrics(y, lgb, qs, data.scale)
        return results

    def headline(self, results: dict[str, Any]) -> dict[str, Any]:
        from ecomine.train.reports import report_json

        name = next(n for n in MODEL_NAMES.values() if n in results)
        return report_json({name: results[name]})[name]

    def save(self, folder: Path, model, data: DemandData, spec) -> None:
        from ecomine.models.demand import save_forecaster

        C, T = spec.model.context_length, data.n_periods
        step = 7 if data.freq == "1w" else 1
        origin = data.start + dt.timedelta(days=step * T)
        known = {i: c for i, c in zip(data.items, data.category)}
        config = model.config if spec.model.forecaster == "lightgbm" else demand_config(spec, len(data.items))
        intervals = fit_intervals(model, data, spec)
        save_forecaster(
            Path(folder), model, config, items=data.items,
            tail_units=data.units[:, T - C:], price_rel=data.price_rel[:, T], origin=origin,
            profiles=data.profiles_end, fallback_items=[i for i, f in zip(data.items, data.fallback) if f],
            item_category={**data.other_categories, **{k: v for k, v in known.items() if v is not None}},
            extra={"data_end": (origin - dt.timedelta(days=1)).isoformat()},
            intervals=intervals, scale=data.scale if intervals is not None else None,
        )

    def load(self, folder: Path, spec=None, data: DemandData | None = None):
        """The version folder's torch model or LightGBM forecaster (what `evaluate` takes); the served form is `load_forecaster`."""
        from ecomine.models.demand import load_forecaster

        return load_forecaster(folder).model

    def format_report(self, results: dict[str, Any], title: str):
        from ecomine.train.demand_eval import format_report

        return format_report(results, title=title)

    def fingerprint(self, data: DemandData) -> str:
        return data.fingerprint


TASK = DemandTask()
