"""Item tokens: what an item's text says, as learned vectors added to its id vector.

Sits in `models` under both item models (`recommend`, `recommend_bert`), beside
`recommend_config`. An item's text (its title on Online Retail, its brand and
category ids on the Amazon 5-core logs: "attributes 12 45") is cut into tokens;
each token shared by at least two items gets a learned vector, and an item's
input and output vector becomes its id vector plus the mean of its tokens'. Two
items of one brand or category then share part of their vector from the first
step, which is what a sparse log (a handful of purchases per item) cannot teach
an id vector alone. Learned from the log, not a frozen text encoder's output
(`item_init: text` is that, and can be used with it).

The token table is a pure function of the item texts (`item_tokens`), so a
version needs no file for it: the index rides in the weights as a buffer, and
warm start rebuilds an earlier version's token list from its `items.json`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["ItemTokens", "item_tokens", "ItemTokenEmbedding", "MAX_ITEM_TOKENS"]

MAX_ITEM_TOKENS = 16  # tokens kept per item, rarest first: 99 % of Amazon Toys items have <= 7 attributes
_TOKEN = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class ItemTokens:
    """The token vocabulary (token id i + 1 = ``vocab[i]``; 0 is "no token") and each item's token ids."""

    vocab: list[str]
    index: np.ndarray  # [n_items + 1, max_tokens] int64, row 0 (padding) and unused slots 0

    @property
    def size(self) -> int:
        return len(self.vocab)


def item_tokens(texts: list[str | None], *, max_tokens: int = MAX_ITEM_TOKENS, max_share: float = 0.5) -> ItemTokens:
    """Item texts (item id i + 1 = ``texts[i]``) -> the tokens worth a vector and each item's ids of them.

    A token is kept when at least two items carry it (a token of one item says nothing its id vector does not)
    and at most ``max_share`` of the items do (a word every item has, like "attributes", separates none). An
    item keeps its ``max_tokens`` rarest tokens. Items without text, or with no kept token, get none.
    """
    docs = [sorted(set(_TOKEN.findall(t.lower()))) if t else [] for t in texts]
    counts = Counter(w for d in docs for w in d)
    limit = max_share * len(docs)
    vocab = sorted(w for w, c in counts.items() if 2 <= c <= limit)
    ids = {w: i + 1 for i, w in enumerate(vocab)}
    index = np.zeros((len(docs) + 1, max_tokens), np.int64)
    for row, doc in enumerate(docs, start=1):
        kept = sorted((w for w in doc if w in ids), key=lambda w: (counts[w], w))[:max_tokens]
        index[row, : len(kept)] = [ids[w] for w in kept]
    return ItemTokens(vocab=vocab, index=index)


class ItemTokenEmbedding(nn.Module):
    """The mean of an item's token vectors, added to a table of id vectors.

    ``index`` is a buffer (saved with the weights, filled by `fill` before training);
    ``nn.EmbeddingBag`` takes the mean without building [items, tokens, hidden], and
    token 0 (no token) is left out of it.
    """

    def __init__(self, n_items: int, n_tokens: int, max_tokens: int, hidden: int) -> None:
        super().__init__()
        self.register_buffer("index", torch.zeros(n_items + 1, max_tokens, dtype=torch.long))
        self.bag = nn.EmbeddingBag(n_tokens + 1, hidden, mode="mean", padding_idx=0)
        nn.init.normal_(self.bag.weight, std=0.02)  # GPT-2's init, the scale of the id vectors they add to
        with torch.no_grad():
            self.bag.weight[0].zero_()

    def fill(self, index: np.ndarray) -> None:
        """This run's item -> token ids (`ItemTokens.index`); its shape must be the buffer's."""
        if tuple(index.shape) != tuple(self.index.shape):
            raise ValueError(f"item token index {tuple(index.shape)} does not fit the model's {tuple(self.index.shape)}")
        with torch.no_grad():
            self.index.copy_(torch.as_tensor(index, dtype=torch.long))

    def table(self, ids_weight: torch.Tensor) -> torch.Tensor:
        """[rows, H] id vectors -> the same plus each item's token mean; rows past the items (a [MASK]) unchanged.

        Under `torch.inference_mode` (serving, evaluation) the table is kept until a weight or the index
        changes: it costs ~10x a one-history forward pass at 18k items, and the weights stand still there.
        """
        key = None
        if torch.is_inference_mode_enabled():
            key = tuple((id(t), t.data_ptr(), t._version) for t in (ids_weight, self.bag.weight, self.index))
            cached = getattr(self, "_cached", None)
            if cached is not None and cached[0] == key:
                return cached[1]
        tokens = self.bag(self.index)  # [n_items + 1, H]; an item with no token gets zeros
        extra = ids_weight.shape[0] - tokens.shape[0]
        if extra:
            tokens = nn.functional.pad(tokens, (0, 0, 0, extra))
        out = ids_weight + tokens
        if key is not None:
            self._cached = (key, out)
        return out
