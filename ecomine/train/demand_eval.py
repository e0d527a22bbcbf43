"""Rolling-origin forecast metrics and baselines for the demand task, and their report.

Sits in `train` beside `demand_task` (which calls it from `validate` and
`evaluate`). Every forecast is an array [items, origins, horizon, quantiles]
against actuals [items, origins, horizon]; scaled metrics divide by each item's
in-sample seasonal-naive MAE over the training part (`naive_scale`), as MASE
does. Point baselines (zero, seasonal naive, moving average) use their point as
every quantile: their pinball is defined, their coverage is not (reported as
None). LightGBM is a direct multi-horizon lag-feature model (horizon step as a
feature, item as categorical): an L1 model for p50 and quantile models for the
outer levels, `models.demand_lightgbm`'s, with the evaluation's settings.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ecomine.models.demand import pinball_terms

__all__ = [
    "MODEL_NAME",
    "MODEL_NAMES",
    "naive_scale",
    "forecast_metrics",
    "seasonal_naive",
    "moving_average",
    "lightgbm_forecasts",
    "format_report",
    "quantile_key",
]

MODEL_NAME = "patchtst"
# a version's own report row by `model.forecaster` (a LightGBM version's row is not the `lightgbm` baseline's)
MODEL_NAMES = {"patchtst": MODEL_NAME, "lightgbm": "lightgbm_forecaster", "ensemble": "ensemble"}


def quantile_key(q: float) -> str:
    """0.1 -> "p10", 0.05 -> "p5", 0.975 -> "p97.5"."""
    return f"p{q * 100:g}"


def naive_scale(units: np.ndarray, end: int, season: int) -> np.ndarray:
    """Per item mean |y_t - y_{t-season}| over t < end; zero-error items get the mean of the others (or 1)."""
    y = units[:, :end]
    if y.shape[1] <= season:
        raise ValueError(f"naive_scale: {y.shape[1]} training periods, need more than the season ({season})")
    mae = np.abs(y[:, season:] - y[:, :-season]).mean(axis=1)
    ok = mae > 0
    fill = float(mae[ok].mean()) if ok.any() else 1.0
    return np.where(ok, mae, fill)


def forecast_metrics(actual: np.ndarray, forecast: np.ndarray, quantiles: list[float], scale: np.ndarray,
                     *, point_only: bool = False) -> dict[str, Any]:
    """Metrics of quantile forecasts [N, O, H, Q] against actuals [N, O, H].

    pinball (mean over quantiles of the scaled pinball), pinball_pXX (scaled, per
    quantile), raw_pinball_pXX (units), wape = sum|y - p50| / sum y, mase = mean
    |y - p50| / scale, bias = sum(p50 - y) / sum y, coverage = share of points in
    [lowest, highest quantile], coverage_open the share strictly inside it (the two
    bracket a calibrated band's nominal share on counts, where many points sit on a
    quantile: a p10 of 0 on a zero day), below_low / above_high the shares outside it
    (all None for point forecasts), n points.
    """
    y = np.asarray(actual, np.float64)
    f = np.asarray(forecast, np.float64)
    if f.shape != (*y.shape, len(quantiles)):
        raise ValueError(f"forecast shape {f.shape} does not match actuals {y.shape} x {len(quantiles)} quantiles")
    if not np.isfinite(f).all():
        raise ValueError("forecast holds NaN or inf values")
    s = np.asarray(scale, np.float64)[:, None, None]
    loss = pinball_terms(f, y, quantiles)  # [N, O, H, Q]
    p50 = f[..., quantiles.index(0.5)]
    total = y.sum()
    out: dict[str, Any] = {}
    scaled = loss / s[..., None]
    out["pinball"] = float(scaled.mean())
    for k, level in enumerate(quantiles):
        out[f"pinball_{quantile_key(level)}"] = float(scaled[..., k].mean())
        out[f"raw_pinball_{quantile_key(level)}"] = float(loss[..., k].mean())
    err = np.abs(y - p50)
    out["wape"] = float(err.sum() / total) if total > 0 else math.nan
    out["mase"] = float((err / s).mean())
    out["bias"] = float((p50 - y).sum() / total) if total > 0 else math.nan
    out["coverage"] = None if point_only or len(quantiles) < 2 else float(
        ((f[..., 0] <= y) & (y <= f[..., -1])).mean()
    )
    # the two sides of the band: with many zero days a calibrated lowest quantile is 0, so nothing
    # falls below it and coverage reads 1 - above_high (about 0.9 for a calibrated p90)
    out["below_low"] = None if point_only else float((y < f[..., 0]).mean())
    # counts are discrete: a calibrated q_t has P(y < q_t) <= t <= P(y <= q_t), so a calibrated band's
    # nominal share lies between the open band's coverage and the closed one's (equal on continuous data)
    out["coverage_open"] = None if out["coverage"] is None else float(((f[..., 0] < y) & (y < f[..., -1])).mean())
    out["above_high"] = None if point_only else float((y > f[..., -1]).mean())
    out["n"] = int(y.size)
    return out


def _window(units: np.ndarray, origins: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """units[:, o+lo : o+hi] for each origin: [N, O, hi - lo]."""
    idx = origins[:, None] + np.arange(lo, hi)[None, :]
    return units[:, idx]


def seasonal_naive(units: np.ndarray, origins: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """Repeat the last season before each origin (same weekday last week; weekly: last week): [N, O, H]."""
    last = _window(units, origins, -season, 0)
    return last[..., np.arange(horizon) % season]


def moving_average(units: np.ndarray, origins: np.ndarray, horizon: int, window: int) -> np.ndarray:
    """Mean of the `window` periods before each origin, flat over the horizon: [N, O, H]."""
    mean = _window(units, origins, -window, 0).mean(axis=-1)
    return np.repeat(mean[..., None], horizon, axis=-1)


def lightgbm_forecasts(units: np.ndarray, price_rel: np.ndarray, cov: np.ndarray, train_pairs: np.ndarray,
                       eval_origins: np.ndarray, horizon: int, season: int, quantiles: list[float], *,
                       rounds: int = 300, max_rows: int = 300_000, seed: int = 0, threads: int = 1) -> np.ndarray:
    """Fit LightGBM on the training windows, forecast every item at `eval_origins`: [N, O, H, Q].

    The model of `models.demand_lightgbm` (the servable LightGBM version is the
    same model with its own settings), on windows of just the history its
    features read, so it also scores spans shorter than the task's context.
    """
    from ecomine.models.demand_lightgbm import LightGBMDemandConfig, fit_lightgbm_forecaster, history_needed

    need = history_needed(season)
    pairs = train_pairs[train_pairs[:, 1] >= need]
    if len(pairs) == 0:
        raise ValueError("lightgbm baseline: no training window has enough history for its lag features")
    config = LightGBMDemandConfig(n_items=units.shape[0], horizon=horizon, context_length=need, quantiles=list(quantiles),
                                  freq="1d" if season == 7 else "1w", season=season, rounds=rounds, max_rows=max_rows,
                                  seed=seed, threads=threads)
    steps = np.arange(horizon)

    def windows(items: np.ndarray, origins: np.ndarray) -> dict[str, np.ndarray]:
        return {"past": units[items[:, None], origins[:, None] + np.arange(-need, 0)[None, :]], "item": items,
                "future_cov": cov[origins[:, None] + steps[None, :]], "price_rel": price_rel[items, origins]}

    target = units[pairs[:, 0][:, None], pairs[:, 1][:, None] + steps[None, :]]
    model = fit_lightgbm_forecaster(config, **windows(pairs[:, 0], pairs[:, 1]), target=target)
    n_items = units.shape[0]
    out = model.predict(**windows(np.repeat(np.arange(n_items), len(eval_origins)), np.tile(eval_origins, n_items)))
    return out.reshape(n_items, len(eval_origins), horizon, len(quantiles))


def format_report(results: dict[str, Any], title: str | None = "Demand forecasts (rolling origin)"):
    """A rich Table: one row per model/baseline; best value of each column bold green."""
    from rich.table import Table

    qs = sorted({k[len("pinball_"):] for r in results.values() for k in r if k.startswith("pinball_p")},
                key=lambda k: float(k[1:]))
    cols = ["wape", "mase", "bias", "pinball", *[f"pinball_{q}" for q in qs], "coverage", "coverage_open"]
    lower = {c for c in cols if c not in ("coverage", "coverage_open", "bias")}
    table = Table(title=title)
    table.add_column("model", style="bold", no_wrap=True)
    for c in cols:
        table.add_column(c.replace("pinball_", "pinball\n").replace("_open", "\n(open)"), justify="right")

    def val(name: str, c: str) -> float:
        v = results[name].get(c)
        return float(v) if v is not None and math.isfinite(float(v)) else math.nan

    for name in results:
        cells = [str(name)]
        for c in cols:
            v = val(name, c)
            text = "-" if math.isnan(v) else f"{v:.3f}"
            column = [val(o, c) for o in results if not math.isnan(val(o, c))]
            if c in lower and column and v == min(column) and len(column) > 1:
                text = f"[bold green]{text}[/]"
            cells.append(text)
        table.add_row(*cells)
    first = next(iter(results.values()), {})
    table.caption = (
        f"n={first.get('n', 0):,} points; pinball scaled by each item's in-sample seasonal-naive MAE; "
        "point baselines use their point as every quantile (no coverage); coverage counts a point on a band edge "
        "(a 0 on a p10 of 0) as inside, coverage (open) as outside: a calibrated band's share lies between."
    )
    return table
