"""The demand task: item x period unit series -> PatchTST quantile forecaster, through the shared path.

Implements `ecomine.train.tasks.Task` for `task: demand`. `prepare` is
`train.demand_data.prepare_demand_data` (the panel and its leakage-free time cuts:
each test origin forecasts `horizon` periods from the actual history up to it, no
refit). Items with too little history are forecast by a category/global profile and
flagged.

`model.forecaster: lightgbm` fits `models.demand_lightgbm` on the same training
windows instead (`fit_lightgbm`, called by the runner without Ray Train); its
`predict` takes the network's window arrays, so validation, evaluation, saving
and the ensemble build below treat both forecasters alike.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np

from ecomine.specs import DemandLightGBMSpec
from ecomine.train.demand_data import PROFILE_GLOBAL, DemandData, data_key, fallback_profiles, prepare_demand_data
from ecomine.train.demand_eval import MODEL_NAMES

__all__ = ["DemandData", "DemandTask", "TASK", "prepare_demand_data", "data_key", "demand_config", "lightgbm_config",
           "fit_lightgbm", "model_name", "fallback_profiles", "PROFILE_GLOBAL",
           "UNCALIBRATED", "fit_intervals"]

UNCALIBRATED = "_uncalibrated"  # suffix of the report row of the model's quantiles before calibration


def demand_config(spec, n_items: int, year_lag: bool = False):
    from ecomine.models.demand import DemandConfig

    m = spec.model
    return DemandConfig(
        n_items=n_items, horizon=m.horizon, context_length=m.context_length, quantiles=list(m.quantiles),
        freq=m.freq, d_model=m.d_model, layers=m.layers, heads=m.heads, patch_length=m.patch_length,
        patch_stride=m.patch_stride, dropout=m.dropout, item_dim=m.item_dim, head_hidden=m.head_hidden,
        item_dropout=m.item_dropout, year_lag=year_lag,
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


def _window_arrays(d: DemandData, items: np.ndarray, origins: np.ndarray, C: int, H: int,
                   year_lag: int | None = None) -> dict[str, np.ndarray]:
    """The network's inputs at (item, origin) windows; `year_ago` where `year_lag` (default: the data's) asks for it."""
    year_lag = d.year_lag if year_lag is None else year_lag
    past = d.units[items[:, None], origins[:, None] + np.arange(-C, 0)[None, :]]
    out = {
        "past": past,
        "item": items + 1,
        "future_cov": d.cov[origins[:, None] + np.arange(H)[None, :]],
        "price_rel": d.price_rel[items, origins],
    }
    if year_lag:  # each step's units one year back; NaN where that is before the data
        at = origins[:, None] + np.arange(H)[None, :] - year_lag
        out["year_ago"] = np.where(at >= 0, d.units[items[:, None], np.maximum(at, 0)], np.nan).astype(np.float32)
    return out


def _model_forecasts(model, d: DemandData, origins: np.ndarray, spec, profiles, device="cpu",
                     *, calibrated: bool = True) -> np.ndarray:
    """[N, O, H, Q] forecasts at `origins`: the network for model items (through the model's interval
    calibration where it carries one, unless `calibrated=False`), the profile for fallback ones."""
    from ecomine.models.demand import profile_forecast, year_lag_periods

    C, H = spec.model.context_length, spec.model.horizon
    N = len(d.items)
    items = np.repeat(np.arange(N), len(origins))
    orig = np.tile(origins, N)
    # what this model reads, whatever the data was prepared for (an ensemble's members may differ)
    wants = getattr(getattr(model, "config", None), "year_lag", False)
    arrays = _window_arrays(d, items, orig, C, H, year_lag=year_lag_periods(d.freq) if wants else 0)
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


def _year_tail(d: DemandData) -> np.ndarray:
    """[N, year_lag]: the last year of units before the served origin, NaN-padded where the data is shorter."""
    T, L = d.n_periods, d.year_lag
    tail = np.full((len(d.items), L), np.nan, np.float32)
    take = min(L, T)
    tail[:, L - take:] = d.units[:, T - take:]
    return tail


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
        from ecomine.models.demand import DemandNet

        return DemandNet(demand_config(spec, len(data.items), year_lag=bool(data.year_lag)))

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
            key = ("lightgbm", tuple(origins.tolist()), H, season, tuple(qs), ev.lightgbm_rounds,
                   ev.lightgbm_max_rows, spec.optim.seed)
            if key not in data.baseline_cache:
                data.baseline_cache[key] = lightgbm_forecasts(
                    data.units, data.price_rel, data.cov, data.train_pairs, origins, H, season, qs,
                    rounds=ev.lightgbm_rounds, max_rows=ev.lightgbm_max_rows, seed=spec.optim.seed)
            results["lightgbm"] = forecast_metrics(y, data.baseline_cache[key], qs, data.scale)
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
        config = model.config  # what the model was built with (a LightGBM config, or the network's own)
        intervals = fit_intervals(model, data, spec)
        save_forecaster(
            Path(folder), model, config, items=data.items,
            tail_units=data.units[:, T - C:], price_rel=data.price_rel[:, T], origin=origin,
            profiles=data.profiles_end, fallback_items=[i for i, f in zip(data.items, data.fallback) if f],
            item_category={**data.other_categories, **{k: v for k, v in known.items() if v is not None}},
            extra={"data_end": (origin - dt.timedelta(days=1)).isoformat()},
            intervals=intervals, scale=data.scale if intervals is not None else None,
            year_tail=_year_tail(data) if data.year_lag else None,
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

    def profile(self, folder: Path, model, data: DemandData, spec):
        from ecomine.models.demand import load_forecaster
        from ecomine.train.profiles import demand_profile

        # the saved forecaster, as serving will answer (calibration, fallbacks and all)
        return demand_profile(load_forecaster(folder), data.units, data.context_length, seed=spec.optim.seed)

    def warm_start_vocab(self, spec, data: DemandData) -> tuple[None, None]:
        return None, None

    def fit_lightgbm(self, spec, data: DemandData):
        return fit_lightgbm(spec, data)


TASK = DemandTask()
