"""The risk model: an order line as text + numbers -> pretrained encoder + MLP head -> return probability.

Sits in `models` between the data layer (`features.risk_examples`, `text.order_line_text`)
and the risk task (`ecomine.train.risk_task`) / the Serve loader (`load_risk_model`,
named in `ecomine.serve.config.DEFAULT_LOADERS`). It owns what training and serving
share: the numeric scaler, the calibrator, the torch module, the per-customer and
per-item history state a served request is featurised against, and the version folder
format (safetensors + JSON + parquet; no pickle).

Probabilities: the head's logit is trained with BCE, `pos_weight` and negative
sampling distort it by known amounts (positives counted `pos_weight` times, negatives
kept with probability `negative_sample`), so `logit_offset = log(negative_sample) -
log(pos_weight)` puts it back on the data's odds (the prior correction of King & Zeng)
before the fitted calibrator refines it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from ecomine.data.features import RISK_FEATURES

__all__ = [
    "RiskModelConfig",
    "NumericScaler",
    "numeric_matrix",
    "Calibrator",
    "RiskModel",
    "line_texts",
    "history_state",
    "order_lines_frame",
    "validate_orders",
    "OrderRiskModel",
    "save_risk_model",
    "load_risk_model",
]

WEIGHTS = "model.safetensors"
CONFIG = "risk_config.json"
SCALER = "scaler.json"
CALIBRATION = "calibration.json"
CUSTOMERS = "customers.parquet"
ITEMS = "items.parquet"
ENCODER_DIR = "encoder"  # encoder config + tokenizer; its weights live in model.safetensors


# --------------------------------------------------------------------------- numbers


@dataclass
class NumericScaler:
    """Signed log1p, then standardise with train statistics; nulls -> 0 plus a 1 in a missing indicator."""

    names: list[str]
    mean: list[float]
    std: list[float]

    @classmethod
    def fit(cls, raw: np.ndarray, names: list[str]) -> NumericScaler:
        z = _slog(raw)
        with np.errstate(all="ignore"):
            mean = np.nan_to_num(np.nanmean(z, axis=0)) if len(z) else np.zeros(z.shape[1])
            std = np.nan_to_num(np.nanstd(z, axis=0)) if len(z) else np.ones(z.shape[1])
        return cls(names=list(names), mean=mean.tolist(), std=np.where(std > 1e-6, std, 1.0).tolist())

    @property
    def width(self) -> int:
        return 2 * len(self.names)

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """[n, F] with NaN for missing -> [n, 2F] float32: standardised values, then missing indicators."""
        if raw.ndim != 2 or raw.shape[1] != len(self.names):
            raise ValueError(f"numeric features: expected [n, {len(self.names)}] ({self.names}), got {raw.shape}")
        z = (_slog(raw) - np.asarray(self.mean)) / np.asarray(self.std)
        missing = ~np.isfinite(z)
        return np.concatenate([np.where(missing, 0.0, z), missing], axis=1).astype(np.float32)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _slog(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.log1p(np.abs(x))


def numeric_matrix(frame: pl.DataFrame, names: list[str] | tuple[str, ...] = RISK_FEATURES) -> np.ndarray:
    """The frame's feature columns as float64 [n, F], nulls as NaN."""
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ValueError(f"risk features: frame lacks column(s) {missing}")
    return frame.select(pl.col(n).cast(pl.Float64) for n in names).to_numpy().astype(np.float64)


# --------------------------------------------------------------------------- calibration


@dataclass
class Calibrator:
    """Maps corrected logits to calibrated probabilities. Fitted on the validation split.

    temperature: sigmoid(z / T); platt: sigmoid(a z + b); isotonic: monotone step map of
    sigmoid(z) (stored as its knots); none: sigmoid(z).
    """

    kind: str = "none"
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(cls, kind: str, logits: np.ndarray, labels: np.ndarray) -> Calibrator:
        z, y = np.asarray(logits, np.float64), np.asarray(labels, np.float64)
        if kind == "none" or len(z) == 0 or y.min() == y.max():
            return cls("none" if kind == "none" else kind, {} if kind == "none" else _identity(kind))
        if kind == "temperature":
            from scipy.optimize import minimize_scalar

            res = minimize_scalar(lambda lt: _nll(z / math.exp(lt), y), bounds=(-4.0, 4.0), method="bounded")
            return cls(kind, {"temperature": float(math.exp(res.x))})
        if kind == "platt":
            from sklearn.linear_model import LogisticRegression

            lr = LogisticRegression(C=1e6, max_iter=1000).fit(z.reshape(-1, 1), y)
            return cls(kind, {"a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])})
        if kind == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(_sigmoid(z), y)
            return cls(kind, {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()})
        raise ValueError(f"calibration: unknown kind {kind!r}; use temperature | platt | isotonic | none")

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        z = np.asarray(logits, np.float64)
        p = self.params
        if self.kind == "temperature":
            return _sigmoid(z / p.get("temperature", 1.0))
        if self.kind == "platt":
            return _sigmoid(p.get("a", 1.0) * z + p.get("b", 0.0))
        if self.kind == "isotonic" and p.get("x"):
            return np.interp(_sigmoid(z), p["x"], p["y"])
        return _sigmoid(z)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": self.params}


def _identity(kind: str) -> dict[str, Any]:
    return {"temperature": {"temperature": 1.0}, "platt": {"a": 1.0, "b": 0.0}}.get(kind, {})


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, np.float64)))  # overflow-free


def _nll(z: np.ndarray, y: np.ndarray) -> float:
    # log(1 + e^z) - y z, stably
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


# --------------------------------------------------------------------------- the module


@dataclass
class RiskModelConfig:
    """Everything that shapes the module (saved as risk_config.json beside the weights)."""

    encoder: str  # where from_pretrained reads (resolved source) when training
    mode: str = "frozen"
    text: str = "line"
    max_length: int = 64
    n_numeric: int = 2 * len(RISK_FEATURES)
    hidden: list[int] = field(default_factory=lambda: [128])
    dropout: float = 0.1
    pos_weight: float = 1.0
    logit_offset: float = 0.0  # log(negative_sample) - log(pos_weight), see the module docstring
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> RiskModelConfig:
        return cls(**json.loads(path.read_text()))


class RiskModel(nn.Module):
    """Encoder (mean pooling) -> LayerNorm(text vector) ++ numeric -> MLP -> logit.

    Pretrained weights come from `config.encoder`; loading a version passes
    `encoder_config_dir` instead (an empty encoder; the weights are in the version's
    safetensors). frozen: only the head trains; lora: adapters on query/value + head;
    full: everything.
    """

    def __init__(self, config: RiskModelConfig, *, encoder_config_dir: str | Path | None = None) -> None:
        from transformers import AutoConfig, AutoModel

        super().__init__()
        self.config = config
        if encoder_config_dir is not None:
            self.encoder = AutoModel.from_config(AutoConfig.from_pretrained(str(encoder_config_dir)))
        else:
            self.encoder = AutoModel.from_pretrained(config.encoder)
        if config.mode == "lora":
            from peft import LoraConfig, inject_adapter_in_model

            lora = LoraConfig(
                r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                target_modules=["query", "value"],
            )
            self.encoder = inject_adapter_in_model(lora, self.encoder)
        for name, p in self.encoder.named_parameters():
            p.requires_grad = config.mode == "full" or (config.mode == "lora" and "lora_" in name)
        dim = self.encoder.config.hidden_size
        self.text_norm = nn.LayerNorm(dim)
        layers: list[nn.Module] = []
        width = dim + config.n_numeric
        for h in config.hidden:
            layers += [nn.Linear(width, h), nn.GELU(), nn.Dropout(config.dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.head = nn.Sequential(*layers)
        self.register_buffer("pos_weight", torch.tensor([config.pos_weight], dtype=torch.float32))

    def train(self, mode: bool = True) -> RiskModel:
        super().train(mode)
        if self.config.mode == "frozen":
            self.encoder.eval()  # a frozen encoder never drops out
        return self

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    def logits(self, numeric=None, embeddings=None, input_ids=None, attention_mask=None) -> torch.Tensor:
        """The head's logit [B]: add config.logit_offset for the data's odds."""
        if embeddings is None:
            embeddings = self.pool(input_ids, attention_mask)
        x = self.text_norm(embeddings)
        if self.config.n_numeric:
            x = torch.cat([x, numeric], dim=1)
        return self.head(x).squeeze(-1)

    def forward(self, labels, numeric=None, embeddings=None, input_ids=None, attention_mask=None) -> torch.Tensor:
        """The training loss: BCE with pos_weight on the head's logit."""
        z = self.logits(numeric, embeddings, input_ids, attention_mask)
        return nn.functional.binary_cross_entropy_with_logits(z, labels, pos_weight=self.pos_weight)


# --------------------------------------------------------------------------- text


def line_texts(frame: pl.DataFrame, text: str) -> list[str]:
    """The encoder's input per row: the whole order line (`order_line_text`) or the item title."""
    if text == "line":
        from ecomine.data.text import order_line_text

        return order_line_text(frame).fill_null("").to_list()
    if text == "item":
        name = pl.coalesce(pl.col("item_text"), pl.col("item_id")) if "item_text" in frame.columns else pl.col("item_id")
        return frame.select(name.str.replace_all(r"\s+", " ").str.strip_chars().fill_null("")).to_series().to_list()
    raise ValueError(f"text: unknown kind {text!r}; use line | item")


# --------------------------------------------------------------------------- history state


def history_state(events: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(customers, items): the running totals `risk_examples` computes, as of the log's end.

    customers: user_id, orders, lines, returns, qty_sum, first_ts, last_order_ts, country.
    items: item_id, item_text, purchases, returns, price_sum.
    """
    buy, ret = pl.col("event") == "purchase", pl.col("event") == "return"
    order_key = pl.coalesce(pl.col("order_id"), pl.lit("\x00") + pl.col("ts").cast(pl.String))
    country = [pl.col("country").drop_nulls().mode().first().alias("country")] if "country" in events.columns else [
        pl.lit(None, pl.String).alias("country")
    ]
    customers = (
        events.group_by("user_id")
        .agg(
            order_key.filter(buy).n_unique().cast(pl.Int64).alias("orders"),
            buy.sum().cast(pl.Int64).alias("lines"),
            ret.sum().cast(pl.Int64).alias("returns"),
            pl.col("quantity").filter(buy).sum().cast(pl.Float64).alias("qty_sum"),
            pl.col("ts").min().alias("first_ts"),
            pl.col("ts").filter(buy).max().alias("last_order_ts"),
            *country,
        )
        .sort("user_id")
    )
    text = [pl.col("item_text").drop_nulls().mode().first().alias("item_text")] if "item_text" in events.columns else [
        pl.lit(None, pl.String).alias("item_text")
    ]
    items = (
        events.group_by("item_id")
        .agg(
            *text,
            buy.sum().cast(pl.Int64).alias("purchases"),
            ret.sum().cast(pl.Int64).alias("returns"),
            pl.col("price").filter(buy).sum().cast(pl.Float64).alias("price_sum"),
        )
        .sort("item_id")
    )
    return customers, items


# --------------------------------------------------------------------------- requests


def validate_orders(orders: Any) -> list[dict[str, Any]]:
    """Check request orders; ValueError naming `orders[i].lines[j].field` and the value."""
    if not isinstance(orders, (list, tuple)):
        raise ValueError(f"orders: expected a list of order dicts, got {type(orders).__name__}")
    out = []
    for i, o in enumerate(orders):
        where = f"orders[{i}]"
        if not isinstance(o, dict):
            raise ValueError(f"{where}: expected a dict, got {type(o).__name__}")
        for key in ("order_id", "user_id", "country"):
            v = o.get(key)
            if v is not None and not isinstance(v, str):
                raise ValueError(f"{where}.{key}: expected a string or None, got {v!r}")
        ts = o.get("ts")
        if isinstance(ts, str):
            try:
                ts = datetime.fromisoformat(ts)
            except ValueError:
                raise ValueError(f"{where}.ts: not an ISO datetime: {ts!r}") from None
        if ts is None:
            ts = datetime.now(timezone.utc)
        if not isinstance(ts, datetime):
            raise ValueError(f"{where}.ts: expected a datetime, ISO string or None, got {ts!r}")
        ts = ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)
        lines = o.get("lines")
        if not isinstance(lines, (list, tuple)) or not lines:
            raise ValueError(f"{where}.lines: expected a non-empty list of lines, got {lines!r}")
        clean = []
        for j, line in enumerate(lines):
            lw = f"{where}.lines[{j}]"
            if not isinstance(line, dict):
                raise ValueError(f"{lw}: expected a dict, got {type(line).__name__}")
            item = line.get("item_id")
            if not isinstance(item, str) or not item:
                raise ValueError(f"{lw}.item_id: expected a non-empty string, got {item!r}")
            q = line.get("quantity", 1)
            if isinstance(q, bool) or not isinstance(q, (int, np.integer)) or q < 1:
                raise ValueError(f"{lw}.quantity: expected an integer >= 1, got {q!r}")
            price = line.get("price")
            if price is not None and (
                isinstance(price, bool) or not isinstance(price, (int, float)) or not math.isfinite(price) or price < 0
            ):
                raise ValueError(f"{lw}.price: expected a finite number >= 0 or None, got {price!r}")
            clean.append({"item_id": item, "quantity": int(q), "price": None if price is None else float(price)})
        out.append({**o, "ts": ts, "lines": clean})
    return out


def order_lines_frame(orders: list[dict[str, Any]], customers: pl.DataFrame, items: pl.DataFrame) -> pl.DataFrame:
    """Validated orders -> one row per line with the RISK_FEATURES `risk_examples` would give it.

    Defaults (documented behaviour, never an error): an unknown or missing customer has
    no history (0 prior orders/lines/returns, null ratios, tenure 0); the order's country,
    else the customer's usual country; an unknown item has null item features and its id
    as text; a missing price is the item's mean price (null for an unknown item).
    """
    rows = [
        {"__order": i, "user_id": o.get("user_id"), "ts": o["ts"], "req_country": o.get("country"),
         "item_id": line["item_id"], "quantity": line["quantity"], "price": line["price"]}
        for i, o in enumerate(orders) for line in o["lines"]
    ]
    schema = {"__order": pl.Int64, "user_id": pl.String, "ts": pl.Datetime("us", "UTC"), "req_country": pl.String,
              "item_id": pl.String, "quantity": pl.Int64, "price": pl.Float64}
    df = pl.DataFrame(rows, schema=schema)
    cust = customers.with_columns(pl.col("first_ts", "last_order_ts").dt.cast_time_unit("us").dt.convert_time_zone("UTC"))
    df = df.join(cust, on="user_id", how="left", maintain_order="left").join(
        items.rename({"returns": "item_returns"}), on="item_id", how="left", maintain_order="left"
    )
    c = pl.col
    lines = c("lines").fill_null(0)
    item_lines = c("purchases").fill_null(0)
    price = pl.coalesce(c("price"), pl.when(item_lines > 0).then(c("price_sum") / item_lines))
    days = lambda e: e.dt.total_microseconds() / 86_400_000_000.0  # noqa: E731
    return df.with_columns(price.alias("price")).select(
        "__order", "user_id", "item_id", "item_text", "ts",
        pl.coalesce(c("req_country"), c("country")).alias("country"),
        "quantity", "price",
        (c("quantity") * c("price")).alias("line_value"),
        c("orders").fill_null(0).alias("cust_prior_orders"),
        lines.alias("cust_prior_lines"),
        c("returns").fill_null(0).alias("cust_prior_returns"),
        pl.when(lines > 0).then(c("returns") / lines).alias("cust_prior_return_rate"),
        days(c("ts") - c("last_order_ts")).clip(0).alias("cust_days_since_prev_order"),
        days(c("ts") - c("first_ts")).clip(0).fill_null(0.0).alias("cust_tenure_days"),
        item_lines.alias("item_prior_purchases"),
        pl.when(item_lines > 0).then(c("item_returns") / item_lines).alias("item_prior_return_rate"),
        pl.when(c("qty_sum") > 0).then(c("quantity") * lines / c("qty_sum")).alias("qty_rel_cust_mean"),
        pl.when(c("price_sum") > 0).then(c("price") * item_lines / c("price_sum")).alias("price_rel_item_mean"),
        c("ts").dt.hour().alias("hour"),
        c("ts").dt.weekday().alias("day_of_week"),
    )


class OrderRiskModel:
    """A loaded version: `.score(orders) -> [n_orders]` calibrated probabilities, `.threshold`.

    An order's probability is that any of its lines is returned: 1 - prod(1 - p_line)
    (lines treated as independent given their features).
    """

    def __init__(self, module, tokenizer, scaler: NumericScaler, calibrator: Calibrator, threshold: float,
                 customers: pl.DataFrame, items: pl.DataFrame, meta: dict[str, Any] | None = None) -> None:
        self.module, self.tokenizer = module.eval(), tokenizer
        self.scaler, self.calibrator, self.threshold = scaler, calibrator, float(threshold)
        self.customers, self.items, self.meta = customers, items, meta or {}
        self._cache: dict[str, np.ndarray] = {}  # text -> pooled vector (item titles repeat a lot)

    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        todo = sorted({t for t in texts if t not in self._cache})
        cfg = self.module.config
        with torch.inference_mode():
            for s in range(0, len(todo), batch_size):
                chunk = todo[s : s + batch_size]
                tok = self.tokenizer(chunk, padding=True, truncation=True, max_length=cfg.max_length, return_tensors="pt")
                vec = self.module.pool(tok["input_ids"], tok["attention_mask"]).float().numpy()
                self._cache.update(zip(chunk, vec))
        if len(self._cache) > 50_000:  # bounded memory on a long-running replica
            self._cache = {t: self._cache[t] for t in texts if t in self._cache}
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, self.module.encoder.config.hidden_size))

    def line_probabilities(self, frame: pl.DataFrame) -> np.ndarray:
        """Calibrated return probability of each row of a features frame (RISK_FEATURES + text columns)."""
        if frame.height == 0:
            return np.zeros(0)
        emb = torch.from_numpy(self.embed(line_texts(frame, self.module.config.text)).astype(np.float32))
        num = torch.from_numpy(self.scaler.transform(numeric_matrix(frame, self.scaler.names)))
        with torch.inference_mode():
            z = self.module.logits(numeric=num, embeddings=emb).double().numpy()
        return self.calibrator(z + self.module.config.logit_offset)

    def score(self, orders: list[dict[str, Any]]) -> np.ndarray:
        orders = validate_orders(orders)
        if not orders:
            return np.zeros(0)
        frame = order_lines_frame(orders, self.customers, self.items)
        p = np.clip(self.line_probabilities(frame), 0.0, 1.0)
        keep = np.zeros(len(orders))
        np.add.at(keep, frame["__order"].to_numpy(), np.log1p(-np.minimum(p, 1 - 1e-12)))
        return 1.0 - np.exp(keep)


# --------------------------------------------------------------------------- version folder


def save_risk_model(folder: str | Path, module, *, scaler: NumericScaler, calibrator: Calibrator, threshold: float,
                    customers: pl.DataFrame, items: pl.DataFrame, meta: dict[str, Any] | None = None) -> None:
    """Weights (safetensors, encoder included), configs and tokenizer, scaler, calibration, history state."""
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, str(folder / WEIGHTS))
    module.config.save(folder / CONFIG)
    enc = folder / ENCODER_DIR
    enc.mkdir(exist_ok=True)
    module.encoder.config.save_pretrained(str(enc))
    for stray in enc.glob("*.safetensors"):
        stray.unlink()
    AutoTokenizer.from_pretrained(module.config.encoder).save_pretrained(str(enc))
    (folder / SCALER).write_text(json.dumps(scaler.to_json(), indent=2))
    (folder / CALIBRATION).write_text(
        json.dumps({**calibrator.to_json(), "threshold": float(threshold), **(meta or {})}, indent=2, default=str)
    )
    customers.write_parquet(folder / CUSTOMERS)
    items.write_parquet(folder / ITEMS)


def load_risk_model(folder: str | Path) -> OrderRiskModel:
    """A verified version folder (checksums are the registry's job) -> OrderRiskModel."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    folder = Path(folder)
    for name in (WEIGHTS, CONFIG, SCALER, CALIBRATION, CUSTOMERS, ITEMS, ENCODER_DIR):
        if not (folder / name).exists():
            raise FileNotFoundError(f"risk model folder {folder}: missing {name}")
    config = RiskModelConfig.load(folder / CONFIG)
    config.encoder = str(folder / ENCODER_DIR)  # the training machine's path means nothing here (tokenizer is here)
    module = RiskModel(config, encoder_config_dir=folder / ENCODER_DIR)
    module.load_state_dict(load_file(str(folder / WEIGHTS)))
    cal = json.loads((folder / CALIBRATION).read_text())
    return OrderRiskModel(
        module, AutoTokenizer.from_pretrained(str(folder / ENCODER_DIR)),
        NumericScaler(**json.loads((folder / SCALER).read_text())),
        Calibrator(cal["kind"], cal.get("params", {})), cal["threshold"],
        pl.read_parquet(folder / CUSTOMERS), pl.read_parquet(folder / ITEMS),
        meta={k: v for k, v in cal.items() if k not in ("kind", "params", "threshold")},
    )
