"""The demand forecaster: a PatchTST encoder with a quantile head, and its served form.

Sits in `models` between the demand features (`ecomine.data.features`) and the
training task (`ecomine.train.demand_task`). One global model over all items:
`transformers.PatchTSTModel` (random init, no download) encodes an item's
scaled unit history; a head adds the item embedding (id 0 = unknown), the
calendar of every horizon step, the last known price relative to the context
and three seasonal profile values read from the context, and emits monotone
quantiles per step. `DemandModel` (the network plus the series tails and
fallback profiles a version stores; from `load_forecaster(folder)`) is
what serving calls: forecasts from the end of the training data, with a
category/global profile, flagged, for items the model cannot forecast; and
`explain`, which `ecomine.models.demand_explain` answers. A LightGBM version
(`models.demand_lightgbm`: the same `predict` arguments) is served by the same
`PanelForecaster` code as a `LightGBMDemandModel`, which explains the same way.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ecomine.models.demand_calendar import N_CALENDAR, calendar_features, period_dates, season_length, year_lag_periods
from ecomine.models.demand_explain import explain_forecast
from ecomine.models.demand_intervals import interpolate_quantiles

__all__ = [
    "DemandConfig",
    "DemandNet",
    "PanelForecaster",
    "DemandModel",
    "LightGBMDemandModel",
    "calendar_features",
    "season_length",
    "year_lag_periods",
    "period_dates",
    "pinball_terms",
    "pinball_loss",
    "interpolate_quantiles",
    "profile_forecast",
    "save_forecaster",
    "load_forecaster",
    "N_CALENDAR",
    "SCALE_FLOOR",
]

SCALE_FLOOR = 1.0  # units added to the mean-abs scale: an all-zero context still scales sanely
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
SERIES = "series.safetensors"
ITEMS = "items.json"
PROFILES = "profiles.json"


def pinball_terms(pred, target, quantiles):
    """Pinball (quantile) loss of every point and level [..., Q]: pred [..., Q], target [...], quantiles [Q]; torch or numpy."""
    diff = target[..., None] - pred
    if isinstance(diff, np.ndarray):
        q = np.asarray(quantiles, dtype=diff.dtype)
        return np.maximum(q * diff, (q - 1) * diff)
    q = torch.as_tensor(quantiles, dtype=diff.dtype, device=diff.device)
    return torch.maximum(q * diff, (q - 1) * diff)


def pinball_loss(pred, target, quantiles):
    """Mean pinball (quantile) loss of `pinball_terms`: a float for numpy, a tensor for torch."""
    terms = pinball_terms(pred, target, quantiles)
    return float(np.mean(terms)) if isinstance(terms, np.ndarray) else terms.mean()


@dataclass
class DemandConfig:
    """Everything needed to rebuild the model (stored as config.json beside the weights)."""

    n_items: int
    horizon: int
    context_length: int
    quantiles: list[float]
    freq: str = "1d"
    d_model: int = 32
    layers: int = 2
    heads: int = 2
    patch_length: int = 7
    patch_stride: int = 7
    dropout: float = 0.1
    item_dim: int = 16
    head_hidden: int = 64
    item_dropout: float = 0.1
    year_lag: bool = False  # the head also reads each step's value one year back (`year_lag_periods`)


class DemandNet(nn.Module):
    """PatchTST over log1p(units / scale) + per-step quantile head; forward(**batch) -> loss."""

    def __init__(self, config: DemandConfig) -> None:
        super().__init__()
        from transformers import PatchTSTConfig, PatchTSTModel

        self.config = config
        c = config
        self.encoder = PatchTSTModel(PatchTSTConfig(
            num_input_channels=1, context_length=c.context_length, patch_length=c.patch_length,
            patch_stride=c.patch_stride, d_model=c.d_model, num_hidden_layers=c.layers,
            num_attention_heads=c.heads, ffn_dim=2 * c.d_model, dropout=c.dropout,
            scaling=None,  # we scale per series ourselves (the head needs the scale back)
            do_mask_input=False, norm_type="layernorm", pooling_type=None,
        ))
        n_patches = (max(c.context_length, c.patch_length) - c.patch_length) // c.patch_stride + 1
        self.pool = nn.Linear(n_patches * c.d_model, c.head_hidden)
        self.items = nn.Embedding(c.n_items + 1, c.item_dim)  # 0: unknown item
        self.steps = nn.Embedding(c.horizon, c.item_dim)
        n_in = c.head_hidden + 2 * c.item_dim + N_CALENDAR + 1 + 3 + (2 if c.year_lag else 0)
        self.head = nn.Sequential(
            nn.Linear(n_in, c.head_hidden), nn.GELU(), nn.Dropout(c.dropout),
            nn.Linear(c.head_hidden, c.head_hidden), nn.GELU(),
            nn.Linear(c.head_hidden, len(c.quantiles)),
        )
        self.register_buffer("quantile_levels", torch.tensor(c.quantiles, dtype=torch.float32))

    def _profile(self, x: torch.Tensor) -> torch.Tensor:
        """Per horizon step: the scaled value one season back, the context mean at that season slot, the last season mean."""
        c, m = self.config, season_length(self.config.freq)
        steps = torch.arange(c.horizon, device=x.device)
        last = x[:, c.context_length - m + (steps % m)]  # [B, H]
        slots = (torch.arange(c.context_length, device=x.device) - c.context_length) % m
        onehot = (slots[None, :] == (steps % m)[:, None]).float()  # [H, ctx]
        mean = x @ (onehot / onehot.sum(1, keepdim=True)).T  # [B, H]
        return torch.stack([last, mean, x[:, -m:].mean(1, keepdim=True).expand_as(last)], dim=-1)

    def quantiles_scaled(self, past, item, future_cov, price_rel, *, year_ago=None, flat_profile=None, past_index=None):
        """Quantiles of units / scale: [B, H, Q], non-negative and non-decreasing in Q; plus scale [B].

        Two hooks for the explanations (`demand_explain`), both None in training,
        where nothing changes. `flat_profile` (bool [B]): where True, the three
        seasonal profile values are replaced by the row's context mean on the same
        scale, a profile with no season in it (it has to sit here: the profile is
        computed inside the model). `past_index` (long [B]): row b reads history
        past[past_index[b]], so the 32 coalitions of an item, which hold only two
        distinct histories, encode each once (the encoder is half the cost).
        `year_ago` [B, H] (units one year before each step, NaN where unknown) is read
        when the config has `year_lag`: log1p of it on the context's scale, and a flag.
        """
        c = self.config
        scale = past.abs().mean(1) + SCALE_FLOOR
        x = past / scale[:, None]
        z = torch.log1p(x)
        enc = self.encoder(past_values=z[:, :, None]).last_hidden_state  # [B, 1, P, d]
        h = torch.nn.functional.gelu(self.pool(enc.flatten(1)))  # [B, hidden]
        if past_index is not None:
            scale, x, h = scale[past_index], x[past_index], h[past_index]
        if self.training and c.item_dropout > 0:
            item = torch.where(torch.rand(item.shape, device=item.device) < c.item_dropout, 0, item)
        B, H = x.shape[0], c.horizon
        prof = self._profile(x)
        if flat_profile is not None:
            flat = x.mean(1)[:, None, None].expand_as(prof)
            prof = torch.where(flat_profile[:, None, None], flat, prof)
        prof = torch.log1p(prof)
        feats = torch.cat([
            h[:, None, :].expand(B, H, -1),
            self.items(item)[:, None, :].expand(B, H, -1),
            self.steps.weight[None].expand(B, H, -1),
            future_cov, price_rel[:, None, None].expand(B, H, 1), prof,
            *self._year_features(year_ago, scale, B, H),
        ], dim=-1)
        raw = self.head(feats)  # [B, H, Q]
        # lowest quantile ReLU (exact zeros for intermittent items), the rest cumulative softplus: never cross
        first = torch.relu(raw[..., :1])
        rest = torch.nn.functional.softplus(raw[..., 1:])
        return torch.cumsum(torch.cat([first, rest], dim=-1), dim=-1), scale

    def _year_features(self, year_ago, scale, B: int, H: int) -> list[torch.Tensor]:
        if not self.config.year_lag:
            return []
        if year_ago is None:
            year_ago = torch.full((B, H), float("nan"), device=scale.device)
        known = torch.isfinite(year_ago)
        value = torch.log1p(torch.where(known, year_ago.clamp(min=0), 0.0) / scale[:, None])
        return [value[..., None], known.float()[..., None]]

    def forward(self, past, item, future_cov, price_rel, target=None, *, year_ago=None, flat_profile=None,
                past_index=None):
        q, scale = self.quantiles_scaled(past, item, future_cov, price_rel, year_ago=year_ago,
                                         flat_profile=flat_profile, past_index=past_index)
        if target is None:
            return q * scale[:, None, None]
        return pinball_loss(q, target / scale[:, None], self.quantile_levels)

    @torch.no_grad()
    def predict(self, past: np.ndarray, item: np.ndarray, future_cov: np.ndarray, price_rel: np.ndarray,
                year_ago: np.ndarray | None = None, batch_size: int = 1024, device: Any = "cpu") -> np.ndarray:
        """Units quantiles [N, H, Q] (numpy) for numpy inputs, in batches."""
        was = self.training
        self.eval()
        out = []
        for s in range(0, len(past), batch_size):
            sl = slice(s, s + batch_size)
            out.append(self(
                torch.as_tensor(past[sl], dtype=torch.float32, device=device),
                torch.as_tensor(item[sl], dtype=torch.long, device=device),
                torch.as_tensor(future_cov[sl], dtype=torch.float32, device=device),
                torch.as_tensor(price_rel[sl], dtype=torch.float32, device=device),
                year_ago=None if year_ago is None else torch.as_tensor(year_ago[sl], dtype=torch.float32, device=device),
            ).float().cpu().numpy())
        self.train(was)
        return np.concatenate(out) if out else np.zeros((0, self.config.horizon, len(self.config.quantiles)), np.float32)


def profile_forecast(profile: np.ndarray, start_slot: int, horizon: int, freq: str) -> np.ndarray:
    """A fallback profile [season slots, Q] laid over `horizon` steps from slot `start_slot`: [H, Q]."""
    m = season_length(freq)
    return profile[(start_slot + np.arange(horizon)) % m]


@dataclass
class PanelForecaster:
    """A served demand version: `forecast(item_ids, horizon, quantiles)` -> [n_items, n_quantiles, horizon].

    Serve's `DemandForecaster` deployment (`ecomine.serve.deployments`) wraps one.

    Model items are forecast by `model.predict` (the PatchTST network or the
    LightGBM boosters, same arguments) from the stored tail of their series (the
    origin is the period after the training data); every other item gets its
    category's profile (or the global one), and `known_items` says False.
    """

    model: Any  # DemandNet | demand_lightgbm.LightGBMForecaster
    config: Any  # DemandConfig | demand_lightgbm.LightGBMDemandConfig: read are horizon, quantiles, freq
    items: list[str]  # panel items; index + 1 is the embedding id
    tail_units: np.ndarray  # [n_items, context_length]
    price_rel: np.ndarray  # [n_items]
    origin: dt.date  # first forecast period
    profiles: dict[str, np.ndarray]  # category or "__global__" -> [season slots, Q]
    item_category: dict[str, str | None] = field(default_factory=dict)  # item -> category, where known
    fallback_items: list[str] = field(default_factory=list)  # panel items with too little history: profile
    intervals: Any = None  # demand_intervals.QuantileShift applied to network forecasts (None: as trained)
    scale: np.ndarray | None = None  # [n_items] each panel item's scale, the unit of `intervals`' shifts
    year_tail: np.ndarray | None = None  # [n_items, year_lag_periods]: the last year of units (NaN before the data)

    @property
    def freq(self) -> str:
        return self.config.freq

    @property
    def max_horizon(self) -> int:
        return self.config.horizon

    @property
    def quantiles(self) -> list[float]:
        return list(self.config.quantiles)

    def known_items(self, item_ids: list[str]) -> list[bool]:
        index = self._index
        return [i in index for i in item_ids]

    @property
    def _index(self) -> dict[str, int]:
        if not hasattr(self, "_index_cache"):
            skip = set(self.fallback_items)
            self._index_cache = {item: k for k, item in enumerate(self.items) if item not in skip}
        return self._index_cache

    def explain(self, item_ids: list[str], horizon: int, quantile: float = 0.5) -> list[dict[str, Any]]:
        """What drives each item's forecast at `quantile`: `ecomine.models.demand_explain.explain_forecast`."""
        return explain_forecast(self, item_ids, horizon, quantile=quantile)

    def average_calendar(self) -> np.ndarray:
        """[N_CALENDAR]: the calendar of no date in particular (the mean over the year from the origin; read-only)."""
        return _average_calendar(self.origin, self.freq)

    def check_request(self, horizon: int, quantiles: list[float]) -> None:
        """ValueError naming `horizon` or `quantiles` when this model cannot answer them."""
        if not isinstance(horizon, (int, np.integer)) or horizon < 1:
            raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
        if horizon > self.max_horizon:
            raise ValueError(f"horizon {horizon} exceeds this model's trained maximum of {self.max_horizon} periods ({self.freq})")
        bad = [q for q in quantiles if not (isinstance(q, (int, float)) and 0.0 < q < 1.0)]
        if bad:
            raise ValueError(f"quantiles must lie in (0, 1), got {bad}")
        lo, hi = self.quantiles[0], self.quantiles[-1]
        outside = [q for q in quantiles if not lo - 1e-9 <= q <= hi + 1e-9]
        if outside:
            raise ValueError(f"quantiles {outside} lie outside the trained levels {lo:g} to {hi:g} (model.quantiles)")

    def network_inputs(self, item_ids: list[str]) -> tuple[list[int], dict[str, np.ndarray]]:
        """The positions in `item_ids` the network forecasts, and their inputs (`DemandNet.predict`'s)."""
        index = self._index
        rows = [r for r, i in enumerate(item_ids) if i in index]
        k = np.array([index[item_ids[r]] for r in rows], dtype=np.int64)
        cov = calendar_features(period_dates(self.origin, self.config.horizon, self.freq), self.freq)
        inputs = {"past": self.tail_units[k], "item": k + 1, "future_cov": np.repeat(cov[None], len(k), 0),
                  "price_rel": self.price_rel[k]}
        if getattr(self.config, "year_lag", False):  # step h of the origin is year_tail[:, h]
            inputs["year_ago"] = self.year_tail[k][:, : self.config.horizon]
        return rows, inputs

    def finish(self, out: np.ndarray, horizon: int, quantiles: list[float]) -> np.ndarray:
        """Trained-level forecasts [n, max_horizon, trained Q] -> the answer [n, len(quantiles), horizon]."""
        out = np.maximum(np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0), 0.0)
        out = interpolate_quantiles(out, self.config.quantiles, sorted(quantiles))
        if list(quantiles) != sorted(quantiles):  # answer in the caller's order
            order = np.argsort(np.argsort(quantiles))
            out = out[..., order]
        return np.ascontiguousarray(out[:, :horizon, :].transpose(0, 2, 1))

    def forecast(self, item_ids: list[str], horizon: int, quantiles: list[float] | None = None) -> np.ndarray:
        """Quantile forecasts [n_items, n_quantiles, horizon]: finite, >= 0, non-decreasing in quantile."""
        quantiles = list(self.config.quantiles if quantiles is None else quantiles)
        self.check_request(horizon, quantiles)
        ids = [str(i) for i in item_ids]
        index = self._index
        out = np.zeros((len(ids), self.config.horizon, len(self.config.quantiles)), np.float64)
        rows, inputs = self.network_inputs(ids)
        if rows:
            out[rows] = self.model.predict(**inputs)
            if self.intervals is not None:
                out[rows] = self.intervals.apply(out[rows], self.scale[inputs["item"] - 1])
        slot = int(_slot(np.datetime64(self.origin, "D"), self.freq))
        for r, i in enumerate(ids):
            if i not in index:
                cat = self.item_category.get(i)
                prof = self.profiles.get(cat) if cat is not None else None
                prof = self.profiles["__global__"] if prof is None else prof
                out[r] = profile_forecast(prof, slot, self.config.horizon, self.freq)
        return self.finish(out, horizon, quantiles)


@dataclass
class DemandModel(PanelForecaster):
    """A PatchTST version served (`load_forecaster`): the panel forecast and its explanation."""


@dataclass
class LightGBMDemandModel(PanelForecaster):
    """A LightGBM version served (`load_forecaster` on a folder with `lightgbm.json`): the panel forecast, and
    its explanation by the same five input groups, ablated in the boosters' feature columns."""


@functools.lru_cache(maxsize=16)
def _average_calendar(origin: dt.date, freq: str) -> np.ndarray:
    # 52 weeks of periods: every weekday equally often, every month, one Christmas and its run-up
    n = 364 if freq == "1d" else 52
    mean = calendar_features(period_dates(origin, n, freq), freq).mean(0)
    mean.flags.writeable = False  # shared by every caller through the cache
    return mean


def _slot(date: np.datetime64, freq: str) -> int:
    """Season slot of a period start: day of week (0 = Monday) daily, 0 weekly."""
    return int((date.astype(np.int64) + 3) % 7) if freq == "1d" else 0


def save_forecaster(folder: Path, model, config, *, items: list[str], tail_units: np.ndarray,
                    price_rel: np.ndarray, origin: dt.date, profiles: dict[str, np.ndarray],
                    item_category: dict[str, str | None], fallback_items: list[str], extra: dict[str, Any] | None = None,
                    intervals=None, scale: np.ndarray | None = None, year_tail: np.ndarray | None = None) -> None:
    """Write the model's files, series.safetensors, config.json, items.json, profiles.json (no pickle).

    The model's files: model.safetensors for the PatchTST network (`config` a
    `DemandConfig`), or `lightgbm.json` and its boosters' text files for a
    `LightGBMForecaster` (`config` its `LightGBMDemandConfig`).
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    if isinstance(model, nn.Module):
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(folder / WEIGHTS))
    else:
        model.save(folder)
    series = {"tail_units": tail_units, "price_rel": price_rel, **({"scale": scale} if intervals is not None else {}),
              **({"year_tail": year_tail} if year_tail is not None else {})}
    save_file({k: torch.as_tensor(np.ascontiguousarray(v, np.float32)) for k, v in series.items()}, str(folder / SERIES))
    if intervals is not None:
        intervals.save(folder)
    (folder / CONFIG).write_text(json.dumps(
        {"model": asdict(config), "origin": origin.isoformat(), **(extra or {})}, indent=2))
    (folder / ITEMS).write_text(json.dumps({"items": list(items), "fallback_items": list(fallback_items), "item_category": item_category}))
    (folder / PROFILES).write_text(json.dumps({k: np.asarray(v).tolist() for k, v in profiles.items()}))


def load_forecaster(folder: str | Path) -> PanelForecaster:
    """A verified version folder -> `DemandModel`, or `LightGBMDemandModel` where `lightgbm.json` is (the serve loader for task demand)."""
    from safetensors.torch import load_file

    from ecomine.models.demand_intervals import load_intervals
    from ecomine.models.demand_lightgbm import LIGHTGBM_FILE, load_lightgbm_forecaster

    folder = Path(folder)
    meta = json.loads((folder / CONFIG).read_text())
    served: type[PanelForecaster]
    if (folder / LIGHTGBM_FILE).exists():
        model: Any = load_lightgbm_forecaster(folder)
        config, served = model.config, LightGBMDemandModel
    else:
        config, served = DemandConfig(**meta["model"]), DemandModel
        model = DemandNet(config)
        model.load_state_dict(load_file(str(folder / WEIGHTS)))
        model.eval()
    series = load_file(str(folder / SERIES))
    items = json.loads((folder / ITEMS).read_text())
    profiles = {k: np.asarray(v, np.float64) for k, v in json.loads((folder / PROFILES).read_text()).items()}
    model.intervals = load_intervals(folder)  # what `train.demand_task` forecasts with, as served
    return served(
        model=model, config=config, items=items["items"], tail_units=series["tail_units"].numpy(),
        price_rel=series["price_rel"].numpy(), origin=dt.date.fromisoformat(meta["origin"]),
        profiles=profiles, item_category=items.get("item_category", {}), fallback_items=items.get("fallback_items", []),
        intervals=model.intervals, scale=series["scale"].numpy().astype(np.float64) if "scale" in series else None,
        year_tail=series["year_tail"].numpy() if "year_tail" in series else None,
    )
