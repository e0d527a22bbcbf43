"""What both item models share: the padding id, the config with its named presets, left padding.

Sits in `models` under the causal GPT-2 recommender (`recommend`) and the masked-item
BERT one (`recommend_bert`); both import from here, neither from the other, and
`recommend` re-exports these names.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ecomine.specs.train import RECOMMEND_PRESETS

__all__ = ["PAD_ID", "RecommenderConfig", "recommend_small", "recommend_base", "left_pad", "batch_width", "repeat_weights"]

PAD_ID = 0


@dataclass
class RecommenderConfig:
    """Every hyperparameter of the model, stored as config.json beside the weights."""

    n_items: int
    hidden: int = 64
    layers: int = 2
    heads: int = 2
    max_len: int = 50
    dropout: float = 0.1
    repeat: bool = True
    loss: Literal["full_softmax", "sampled_softmax"] = "full_softmax"
    num_negatives: int = 1000
    arch: Literal["gpt2", "bert"] = "gpt2"  # bert: models.recommend_bert.MaskedItemRecommender
    mask_prob: float = 0.2
    # bert only: "previous_item" - positions count back from the [MASK] and each position also reads the item
    # before it (models.recommend_bert); "mask" - the first design (positions from the first item, the [MASK]
    # alone), kept so versions trained before load as they were trained
    bert_query: Literal["previous_item", "mask"] = "previous_item"
    # learned item-text tokens added to each item's vector (models.item_tokens): the token vocabulary's size,
    # 0 for none (and for every version trained before the field existed)
    item_tokens: int = 0
    max_item_tokens: int = 16

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: str | Path) -> RecommenderConfig:
        raw = json.loads(Path(path).read_text())
        raw.setdefault("bert_query", "mask")  # a config.json written before the field existed
        return cls(**raw)


def recommend_small(n_items: int) -> RecommenderConfig:
    """CPU-sized preset: 2 layers, width 64, 50 items of context."""
    return RecommenderConfig(n_items=n_items, **RECOMMEND_PRESETS["recommend_small"])


def recommend_base(n_items: int) -> RecommenderConfig:
    """GPU-sized preset: 4 layers, width 256, 200 items of context."""
    return RecommenderConfig(n_items=n_items, **RECOMMEND_PRESETS["recommend_base"])


def left_pad(histories: list[np.ndarray], max_len: int) -> torch.Tensor:
    """Keep each history's last `max_len` items, left-padded with PAD_ID."""
    out = torch.zeros(len(histories), max_len, dtype=torch.long)
    for r, h in enumerate(histories):
        h = np.array(h[-max_len:], dtype=np.int64)  # a copy: Ray hands out read-only arrays
        if len(h):
            out[r, max_len - len(h) :] = torch.from_numpy(h)
    return out


def batch_width(histories: list[np.ndarray], max_len: int) -> int:
    """Columns a batch of histories needs: its longest history, at most `max_len` (padding-only
    columns change no score, since positions count from the first real item)."""
    return max(1, min(max_len, max((len(h) for h in histories), default=1)))


def repeat_weights(scale: torch.Tensor, decay_logit: torch.Tensor, age: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """The repeat channel both item models add to an item's logit: ``scale * sigmoid(decay_logit) ** age``
    for each position that holds a seen item (``seen`` [N, T]), ``age`` [N, T] its distance from the query.
    Each model says what "seen" and "age" mean for it (the causal one: earlier items; the masked one:
    visible items on either side)."""
    decay = torch.sigmoid(decay_logit)
    return scale * decay ** age.clamp(min=0).to(decay.dtype) * seen.to(decay.dtype)
