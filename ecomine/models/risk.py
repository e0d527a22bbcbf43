"""The risk model: an order line as text + numbers -> pretrained encoder + MLP head -> return probability.

Sits in `models` between the data layer (`risk_examples`, `text.order_line_text`)
and the risk task (`ecomine.train.risk_task`) / the Serve loader (`load_risk_model`,
named in `ecomine.serve.config.DEFAULT_LOADERS`). It owns what training and serving
share: the torch module, the served `OrderRiskModel` and the version folder format
(safetensors + JSON + parquet; no pickle). The inputs (numeric scaler, text, history
state, request check) live in `risk_inputs`, the calibrator in `risk_calibration`;
both are re-exported from here. `load_risk_model` also opens the non-neural versions
of `risk_lightgbm` (a folder holding `lightgbm.json`).

Probabilities: the head's logit is trained with BCE, `pos_weight` and negative
sampling distort it by known amounts (positives counted `pos_weight` times, negatives
kept with probability `negative_sample`), so `logit_offset = log(negative_sample) -
log(pos_weight)` puts it back on the data's odds (the prior correction of King & Zeng)
before the fitted calibrator refines it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from ecomine.data.risk_examples import RISK_FEATURES
from ecomine.models.risk_calibration import Calibrator
from ecomine.models.risk_inputs import (
    NumericScaler,
    history_state,
    line_texts,
    numeric_matrix,
    order_lines_frame,
    order_probabilities,
    validate_orders,
)
from ecomine.models.risk_lightgbm import LIGHTGBM_FILE, LightGBMRiskModel, load_lightgbm_risk
from ecomine.models.text_encoder import quiet_loading

__all__ = [
    "RiskNetConfig",
    "NumericScaler",
    "numeric_matrix",
    "Calibrator",
    "RiskNet",
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


# --------------------------------------------------------------------------- the module


@dataclass
class RiskNetConfig:
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
    def load(cls, path: Path) -> RiskNetConfig:
        return cls(**json.loads(path.read_text()))


class RiskNet(nn.Module):
    """Encoder (mean pooling) -> LayerNorm(text vector) ++ numeric -> MLP -> logit.

    Pretrained weights come from `config.encoder`; loading a version passes
    `encoder_config_dir` instead (an empty encoder; the weights are in the version's
    safetensors). frozen: only the head trains; lora: adapters on query/value + head;
    full: everything.
    """

    def __init__(self, config: RiskNetConfig, *, encoder_config_dir: str | Path | None = None) -> None:
        from transformers import AutoConfig, AutoModel

        super().__init__()
        self.config = config
        if encoder_config_dir is not None:
            self.encoder = AutoModel.from_config(AutoConfig.from_pretrained(str(encoder_config_dir)))
        else:
            quiet_loading()
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

    def train(self, mode: bool = True) -> RiskNet:
        super().train(mode)
        if self.config.mode == "frozen":
            self.encoder.eval()  # a frozen encoder never drops out
        return self

    def pool(self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor,
             *, inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Mean of the encoder's last hidden states over the attended tokens [B, dim].

        `inputs_embeds` (word embeddings instead of ids) is the path integrated gradients
        walks in `risk_explain`.
        """
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds).last_hidden_state
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
        return self.order_probabilities(self.line_probabilities(frame), frame["__order"].to_numpy(), len(orders))

    order_probabilities = staticmethod(order_probabilities)  # 1 - prod(1 - p_line), `risk_inputs`

    def explain(self, orders: list[dict[str, Any]], **limits: Any) -> list[dict[str, Any]]:
        """Per order line, the numeric features and words that moved its probability (`risk_explain`)."""
        from ecomine.models.risk_explain import explain_orders  # so that scoring never loads captum

        return explain_orders(self, orders, **limits)


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


def load_risk_model(folder: str | Path) -> OrderRiskModel | LightGBMRiskModel:
    """A verified version folder (checksums are the registry's job) -> OrderRiskModel, or LightGBMRiskModel
    where the folder holds `lightgbm.json` (a `model.classifier: lightgbm` version; `models.risk_lightgbm`)."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    folder = Path(folder)
    if (folder / LIGHTGBM_FILE).exists():
        return load_lightgbm_risk(folder)
    for name in (WEIGHTS, CONFIG, SCALER, CALIBRATION, CUSTOMERS, ITEMS, ENCODER_DIR):
        if not (folder / name).exists():
            raise FileNotFoundError(f"risk model folder {folder}: missing {name}")
    config = RiskNetConfig.load(folder / CONFIG)
    config.encoder = str(folder / ENCODER_DIR)  # the training machine's path means nothing here (tokenizer is here)
    module = RiskNet(config, encoder_config_dir=folder / ENCODER_DIR)
    module.load_state_dict(load_file(str(folder / WEIGHTS)))
    cal = json.loads((folder / CALIBRATION).read_text())
    return OrderRiskModel(
        module, AutoTokenizer.from_pretrained(str(folder / ENCODER_DIR)),
        NumericScaler(**json.loads((folder / SCALER).read_text())),
        Calibrator(cal["kind"], cal.get("params", {})), cal["threshold"],
        pl.read_parquet(folder / CUSTOMERS), pl.read_parquet(folder / ITEMS),
        meta={k: v for k, v in cal.items() if k not in ("kind", "params", "threshold")},
    )
