"""What drives a demand forecast: exact Shapley values of five input groups, against reference inputs.

Sits in `models` beside the demand forecaster (`ecomine.models.demand`):
`DemandModel.explain` delegates here and serving duck-types on it. This module
imports nothing from `demand` at run time (that arrow points the other way); what
it needs of the forecast path - the network's inputs, the post-processing that
turns trained levels into the asked quantile - comes from the `DemandModel`
itself, the same code `forecast` runs, so an explanation's `values` are the
forecast's.

Why ablation: the inputs are few, named and meaningful as groups, and a
reference input for each is easy to say, so replacing a group and re-running
the network is exact about what the model does, where gradients would explain a
local slope of a ReLU/softplus head. The groups and what each is replaced with:

- `recent_level`: the last season of the context (daily: the last 7 days;
  weekly: the last 4 weeks, a month, since a weekly season is 1 period) set to
  the mean of the earlier context: the series' recent movement is removed. The
  whole series changes, so everything the model reads from it follows (the
  encoder, the per-series scale, the profile values).
- `seasonal_values`: the three profile features (value one season back, mean at
  that season slot, last-season mean) replaced by the context mean on the same
  scale: a profile with no season in it (`DemandNet`'s `flat_profile`).
- `calendar`: every horizon step's calendar covariates replaced by the average
  calendar row over a year of periods (`DemandModel.average_calendar`): no
  weekday, holiday or Christmas effect.
- `price`: price_rel, log(last price / context mean price), set to 0: no price
  change (log 1).
- `item`: the item embedding replaced by id 0, the unknown item.

Why Shapley and not one group at a time: with five groups every coalition is 32
rows per item, cheap enough to run exactly in one batched forward (6,400 rows
for 200 items). Exact Shapley values add up: for every step, the all-reference
forecast (`baseline`: a generic item at its earlier level, no season, an average
calendar, no price change) plus the effects is the forecast, which reads as a
waterfall for a merchandiser. One-at-a-time ablation effects sum to nothing, and
they under-credit inputs that carry the same signal twice (the level reaches the
head through the encoder and through the profile values; the weekday pattern
through the calendar and the profile), each looking unimportant because the
other covers for it. Shapley splits such shared credit evenly; interactions are
not reported separately. Effects are in units at the asked quantile, per step
(`by_step`) and averaged over the horizon (`effect`).

Fallback items (unknown, or panel items with too little history) are a profile,
nothing the network computed: `fallback: True`, `drivers: []`.

A LightGBM version (`models.demand_lightgbm`) explains by the same groups and
references: its features are computed from the same inputs, and `feature_groups`
says which columns each group owns (the lags and level statistics; the season
statistics, flattened to the context mean; the calendar; the price; the item
code, set to one no booster saw), so every coalition is a feature matrix and the
32 of them are one `predict`. Exact as for the network: baseline plus effects is
the forecast.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from ecomine.models.demand import DemandModel

__all__ = ["GROUPS", "coalition_forecasts", "explain_forecast", "recent_window", "shapley_values"]

GROUPS: tuple[str, ...] = ("recent_level", "seasonal_values", "calendar", "price", "item")


def recent_window(freq: str, context_length: int) -> int:
    """Periods `recent_level` covers: a week of days, or 4 weeks; at most half the context (the rest is its reference)."""
    return min(7 if freq == "1d" else 4, max(1, context_length // 2))


def _coalitions(n_groups: int) -> np.ndarray:
    """[2**G, G] bool: coalition s keeps group g's actual value where bit g of s is set (s = 0: all reference)."""
    return ((np.arange(2 ** n_groups)[:, None] >> np.arange(n_groups)[None, :]) & 1).astype(bool)


def shapley_values(v: np.ndarray) -> np.ndarray:
    """Exact Shapley values [..., G, h] of coalition values v [..., 2**G, h] in `_coalitions` order.

    Hand-written (a dozen lines) rather than `shap`: the exact formula over an
    enumeration we already hold, no sampling, no dependency. Summed as weighted
    marginal differences v(S + g) - v(S), so a group that changes nothing gets
    exactly 0, not a rounding residue.
    """
    S = v.shape[-2]
    G = S.bit_length() - 1
    present = _coalitions(G)
    size = present.sum(1)
    out = np.zeros((*v.shape[:-2], G, v.shape[-1]))
    for g in range(G):
        with_g = np.flatnonzero(present[:, g])  # s holds g; s ^ (1 << g) is the same coalition without it
        k = size[with_g] - 1  # the others in the coalition
        w = np.array([math.factorial(a) * math.factorial(G - a - 1) for a in k]) / math.factorial(G)
        diff = v[..., with_g, :] - v[..., with_g ^ (1 << g), :]
        out[..., g, :] = np.einsum("s,...sh->...h", w, diff)
    return out


def _references(model: DemandModel) -> dict[str, str]:
    C = model.config.context_length
    m = recent_window(model.freq, C)
    unit = "days" if model.freq == "1d" else "weeks"
    return {
        "recent_level": f"last {m} {unit} set to the mean of the {C - m} {unit} before",
        "seasonal_values": "seasonal profile flattened to the context mean",
        "calendar": "an average calendar (no weekday, holiday or Christmas effect)" if model.freq == "1d"
        else "an average calendar (no holiday or Christmas effect)",
        "price": "price at its context mean (no price change)",
        "item": "an unknown item (embedding id 0)",
    }


def coalition_forecasts(model: DemandModel, item_ids: list[str], horizon: int, quantile: float
                        ) -> tuple[list[int], np.ndarray]:
    """The network items' positions in `item_ids`, and their forecasts at `quantile` under every coalition.

    Returns (rows, v) with v [len(rows), 2**G, horizon] in `_coalitions` order
    (v[:, -1]: the actual inputs, v[:, 0]: all at reference), from ONE forward
    pass of len(rows) * 2**G rows under no_grad (the encoder reads the 2 distinct
    histories of each item once: `past_index`).
    """
    rows, x = model.network_inputs(item_ids)
    n, G = len(rows), len(GROUPS)
    present = _coalitions(G)
    S = len(present)
    if n == 0:
        return rows, np.zeros((0, S, horizon))
    if hasattr(model.model, "predict_features"):  # a LightGBM version: the groups are columns of its features
        out = _booster_coalitions(model, x, present)
    else:
        out = _network_coalitions(model, x, present)
    if model.intervals is not None:  # through the version's interval calibration, as `forecast` answers
        scale = model.scale[np.asarray(x["item"]) - 1]
        out = model.intervals.apply(out.reshape(n, S, *out.shape[1:]), scale).reshape(out.shape)
    v = model.finish(out.astype(np.float64), horizon, [quantile])[:, 0, :]  # [n * S, horizon]
    return rows, v.reshape(n, S, horizon)


def _reference_inputs(model: DemandModel, x: dict[str, np.ndarray], dtype) -> tuple[np.ndarray, ...]:
    """(past, past with `recent_level` at its reference, future calendar, the average calendar), as `dtype`."""
    past = np.asarray(x["past"], dtype)
    m = recent_window(model.freq, past.shape[1])
    past_ref = past.copy()
    past_ref[:, -m:] = past[:, :-m].mean(1, keepdims=True)
    cov = np.asarray(x["future_cov"], dtype)
    return past, past_ref, cov, np.broadcast_to(model.average_calendar().astype(dtype), cov.shape)


def _network_coalitions(model: DemandModel, x: dict[str, np.ndarray], present: np.ndarray) -> np.ndarray:
    """[n * S, H, Q] the network's trained levels under every coalition, in one forward pass."""
    n, S = len(x["past"]), len(present)
    past, past_ref, cov, cov_ref = _reference_inputs(model, x, np.float32)
    keep = {g: present[None, :, j] for j, g in enumerate(GROUPS)}  # [1, S] per group
    rows_of = np.arange(n)[:, None]
    batch = {  # [n, S, ...]; the histories stay [2n, C]: row (i, s) reads i (actual) or n + i (reference)
        "past": np.concatenate([past, past_ref]),
        "past_index": np.where(keep["recent_level"], rows_of, n + rows_of),
        "item": np.where(keep["item"], np.asarray(x["item"])[:, None], 0),
        "future_cov": np.where(keep["calendar"][..., None, None], cov[:, None], cov_ref[:, None]),
        "price_rel": np.where(keep["price"], np.asarray(x["price_rel"], np.float32)[:, None], 0.0),
        "flat_profile": np.repeat(~keep["seasonal_values"], n, axis=0),
    }
    if "year_ago" in x:  # last year's values are not one of the explained groups: every coalition reads them
        batch["year_ago"] = np.broadcast_to(np.asarray(x["year_ago"], np.float32)[:, None], (n, S, cov.shape[1]))
    net = model.model
    device = next(net.parameters()).device
    dtypes = {"item": torch.long, "past_index": torch.long, "flat_profile": torch.bool}
    tensors = {k: torch.as_tensor(np.ascontiguousarray(v if k == "past" else v.reshape(n * S, *v.shape[2:])),
                                  dtype=dtypes.get(k, torch.float32), device=device) for k, v in batch.items()}
    was = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(**tensors).float().cpu().numpy()  # [n * S, H, Q] units at the trained levels
    finally:
        net.train(was)
    return out


def _booster_coalitions(model, x: dict[str, np.ndarray], present: np.ndarray) -> np.ndarray:
    """[n * S, H, Q] a LightGBM version's levels under every coalition: each group's feature columns
    (`feature_groups`) at the actual or the reference inputs - the network's references - in one predict."""
    from ecomine.models.demand_lightgbm import feature_groups, window_features

    season = model.model.config.season
    past, past_ref, cov, cov_ref = _reference_inputs(model, x, np.float64)
    item, price = np.asarray(x["item"]), np.asarray(x["price_rel"], np.float64)
    n, H = cov.shape[:2]

    def features(p: np.ndarray, c: np.ndarray) -> np.ndarray:
        return window_features(p, item, c, price, season).reshape(n, H, -1)

    actual = features(past, cov)
    cols = feature_groups(season, cov.shape[-1])
    ref = actual.copy()
    ref[..., cols["recent_level"]] = features(past_ref, cov)[..., cols["recent_level"]]
    ref[..., cols["seasonal_values"]] = actual[..., cols["context_mean"]]  # flattened to the context mean
    ref[..., cols["calendar"]] = features(past, cov_ref)[..., cols["calendar"]]
    ref[..., cols["price"]] = 0.0
    ref[..., cols["item"]] = 0.0  # the unknown item: a code no booster was trained on
    at_ref = np.zeros((len(present), actual.shape[-1]), bool)  # [S, F]: coalition s reads column f's reference
    for j, g in enumerate(GROUPS):
        at_ref[np.ix_(~present[:, j], cols[g])] = True
    batch = np.where(at_ref[None, :, None, :], ref[:, None], actual[:, None])  # [n, S, H, F]
    return model.model.predict_features(batch.reshape(-1, batch.shape[-1])).reshape(n * len(present), H, -1)


def explain_forecast(model: DemandModel, item_ids: list[str], horizon: int, *, quantile: float = 0.5
                     ) -> list[dict[str, Any]]:
    """Per item: its forecast at `quantile` and what drove it, largest |effect| first (see the module docstring).

    Each dict: `item_id`, `quantile`, `values` [horizon] (equal to `model.forecast`'s
    at that quantile), `baseline` [horizon] (every group at its reference; values =
    baseline + the sum of the drivers' by_step), `fallback`, and `drivers`: a list of
    {`input`, `effect` (mean over the horizon, units), `by_step` [horizon],
    `reference` (what the input was replaced with)}. Fallback items: no drivers.
    Raises ValueError naming `quantile` or `horizon`.
    """
    if isinstance(quantile, bool) or not isinstance(quantile, (int, float, np.floating)) or not 0.0 < float(quantile) < 1.0:
        raise ValueError(f"quantile must be a number in (0, 1), got {quantile!r}")
    quantile = float(quantile)
    model.check_request(horizon, [quantile])
    ids = [str(i) for i in item_ids]
    rows, v = coalition_forecasts(model, ids, horizon, quantile)
    phi = shapley_values(v)  # [n, G, horizon]
    refs = _references(model)
    out: list[dict[str, Any]] = [{} for _ in ids]
    for j, r in enumerate(rows):
        drivers = [{"input": g, "effect": float(phi[j, k].mean()), "by_step": phi[j, k].tolist(), "reference": refs[g]}
                   for k, g in enumerate(GROUPS)]
        drivers.sort(key=lambda d: -abs(d["effect"]))  # stable: ties keep GROUPS order
        out[r] = {"item_id": ids[r], "quantile": quantile, "values": v[j, -1].tolist(), "baseline": v[j, 0].tolist(),
                  "fallback": False, "drivers": drivers}
    rest = [r for r in range(len(ids)) if not out[r]]
    if rest:  # a profile lookup: `forecast` runs no network for these
        prof = model.forecast([ids[r] for r in rest], horizon, [quantile])[:, 0, :]
        for r, p in zip(rest, prof):
            out[r] = {"item_id": ids[r], "quantile": quantile, "values": p.tolist(), "baseline": p.tolist(),
                      "fallback": True, "drivers": []}
    return out
