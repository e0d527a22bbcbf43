"""The recommendation model: a sequential transformer over item ids.

Sits in `models` (after `data`, before `train`). A GPT-2 stack from
`transformers` whose vocabulary is the item catalogue reads a user's purchase
sequence and scores every item as the next purchase with a full softmax over
the catalogue (tied input/output item embeddings, SASRec-style). Two additions:

- a *repeat* channel: a learned, recency-decayed pointer to the items already
  in the sequence, added to the logits. About a third of next purchases on the
  Online Retail log are repeats; a plain softmax learns them slowly.
- optional knowledge transfer: item embeddings initialised from a pretrained
  text encoder's vectors of the item titles (projected to the model width),
  which also gives a new item a sensible vector before it is ever bought.
- item tokens (`models.item_tokens`, `config.item_tokens > 0`): learned vectors
  of the words / attribute ids in each item's text, their mean added to the
  item's id vector on the input and the output side alike.

Id 0 is padding; items are 1..n_items (see `ItemVocab`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ecomine.models.item_tokens import ItemTokenEmbedding
from ecomine.models.recommend_bert import MaskedItemRecommender
from ecomine.models.recommend_config import (
    PAD_ID,
    RecommenderConfig,
    batch_width,
    left_pad,
    recommend_base,
    recommend_small,
    repeat_weights,
)

__all__ = [
    "PAD_ID",
    "ItemVocab",
    "RecommenderConfig",
    "SequentialRecommender",
    "build_recommender",
    "recommend_small",
    "recommend_base",
    "training_windows",
    "text_initialised_embeddings",
    "left_pad",
    "save_recommender",
    "load_recommender",
]

@dataclass
class ItemVocab:
    """Item id strings <-> model ids (1-based; 0 is padding), with titles."""

    items: list[str]
    texts: list[str | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._index = {item: i + 1 for i, item in enumerate(self.items)}
        if not self.texts:
            self.texts = [None] * len(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def size(self) -> int:
        """Rows of the embedding table: items + padding."""
        return len(self.items) + 1

    def encode(self, items: list[str]) -> np.ndarray:
        """Known items -> ids; unknown items are skipped (they cannot be scored)."""
        return self.split(items)[0]

    def id_of(self, item: str) -> int | None:
        return self._index.get(item)

    def split(self, items: list[str]) -> tuple[np.ndarray, list[str]]:
        """One pass: (the known items' ids, in order; the unknown items, in order)."""
        index, ids, unknown = self._index, [], []
        for item in items:
            i = index.get(item)
            if i is None:
                unknown.append(item)
            else:
                ids.append(i)
        return np.array(ids, dtype=np.int64), unknown

    def decode(self, ids: np.ndarray | list[int]) -> list[str]:
        return [self.items[i - 1] for i in ids]

    def to_json(self) -> dict:
        return {"items": self.items, "texts": self.texts}

    @classmethod
    def from_json(cls, data: dict) -> ItemVocab:
        return cls(items=list(data["items"]), texts=list(data.get("texts") or []))


class SequentialRecommender(nn.Module):
    """GPT-2 over item ids with tied item embeddings and a repeat channel."""

    def __init__(self, config: RecommenderConfig) -> None:
        super().__init__()
        from transformers import GPT2Config, GPT2Model

        self.config = config
        gpt = GPT2Config(
            vocab_size=config.n_items + 1,
            n_positions=config.max_len,
            n_embd=config.hidden,
            n_layer=config.layers,
            n_head=config.heads,
            resid_pdrop=config.dropout,
            embd_pdrop=config.dropout,
            attn_pdrop=config.dropout,
            use_cache=False,
            # GPT-2's tanh-approximated GELU as torch's one fused kernel: transformers' default `gelu_new`
            # computes the same formula in five tensor ops; scoring 1.18x, training steps unchanged
            # (benchmarks/recommend_activation.py). Built from our config, so stored versions load with it too
            activation_function="gelu_pytorch_tanh",
            bos_token_id=PAD_ID,
            eos_token_id=PAD_ID,
        )
        self.backbone = GPT2Model(gpt)
        self.out_bias = nn.Parameter(torch.zeros(config.n_items + 1))
        self.item_tokens = (
            ItemTokenEmbedding(config.n_items, config.item_tokens, config.max_item_tokens, config.hidden)
            if config.item_tokens else None
        )
        # Repeat channel: logit += scale * sum_k decay^k [item bought k steps ago].
        # starts at 0 and learns its sign: a log with no repeats (Amazon 5-core) learned -2.5 from an init
        # of 1.0, and test NDCG@10 there rose 0.0488 -> 0.0519 with this init and dropout 0.3 together
        self.repeat_scale = nn.Parameter(torch.tensor(0.0))
        self.repeat_decay_logit = nn.Parameter(torch.tensor(2.0))  # sigmoid(2) ~ 0.88

    @property
    def item_embeddings(self) -> nn.Embedding:
        return self.backbone.wte

    def item_table(self) -> torch.Tensor:
        """[n_items + 1, H] item vectors as read and scored: the id vectors, plus their tokens' mean when on."""
        weight = self.item_embeddings.weight
        return weight if self.item_tokens is None else self.item_tokens.table(weight)

    def hidden_states(self, ids: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """[B, T] ids (left-padded with 0) -> [B, T, H]; `table`: `item_table()` when the caller has it already."""
        mask = (ids != PAD_ID).long()
        # Positions count from the first real item so left padding does not shift them.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        embeds = nn.functional.embedding(ids, self.item_table() if table is None else table)  # = wte(ids) without tokens
        return self.backbone(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).last_hidden_state

    def _repeat_terms(self, ids: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(index, weight) [N, T] of the repeat channel for N (sequence, query position) pairs.

        `ids` [N, T] holds each pair's own sequence and `positions` [N] its query
        position t: the pair adds scale * decay^(t-s) to item ids[s] for every
        earlier (or same) position s, a recency-decayed count of each item
        already bought. Only the pairs asked for are built, never [B, T, T].
        """
        s = torch.arange(ids.shape[1], device=ids.device)
        age = positions[:, None] - s[None, :]  # [N, T]
        seen = (age >= 0) & (ids != PAD_ID)
        return ids, repeat_weights(self.repeat_scale, self.repeat_decay_logit, age, seen)

    def _project(self, h: torch.Tensor, ids: torch.Tensor, positions: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Scores of every item [N, V] from N hidden states, each row's sequence [N, T] and query position [N],
        against the item vectors `table` (`item_table()`).

        The bias is fused into the matmul and the repeat counts are scattered
        straight into its output instead of building a second [N, V] tensor.
        """
        out = torch.addmm(self.out_bias, h, table.T)
        if self.config.repeat:
            index, weights = self._repeat_terms(ids, positions)
            # in place: addmm's backward does not need its output, and a copy of [N, V] costs as much as the matmul
            out.scatter_add_(1, index, weights.to(out.dtype))
        return out

    def logits(self, ids: torch.Tensor, *, last_only: bool = False, mask_pad: bool = True) -> torch.Tensor:
        """Scores of every item as the next one: [B, T, V] (or [B, 1, V] with `last_only`).

        Serving and evaluation score the last position only; every position
        (`last_only=False`) is kept for analysis and tests, never for training,
        whose loss projects only the positions that have a target.
        """
        table = self.item_table()
        h = self.hidden_states(ids, table)
        B, T, H = h.shape
        if last_only:
            rows, positions = ids, torch.full((B,), T - 1, device=ids.device)
            out = self._project(h[:, -1], rows, positions, table).unsqueeze(1)
        else:
            rows = ids.repeat_interleave(T, dim=0)
            positions = torch.arange(T, device=ids.device).repeat(B)
            out = self._project(h.reshape(B * T, H), rows, positions, table).view(B, T, -1)
        if mask_pad:
            out = out.index_fill(-1, torch.tensor([PAD_ID], device=out.device), float("-inf"))
        return out

    def forward(self, ids: torch.Tensor, targets: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
        """Training forward = the loss (what DDP wraps), times `weight` (the batch's share of targets
        against an average batch, under a length-bucketed order: see RecommendTask.epoch_order)."""
        return self.loss(ids, targets) * weight

    def loss(self, ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Next-item cross-entropy over the full catalogue (or sampled negatives), mean over real targets.

        Hidden states are gathered at the positions that have a target before
        anything touches the catalogue: a [B, T, V] projection over padding
        cost ~4x the whole step at short-sequence shapes (18 % of positions real).
        """
        table = self.item_table()  # once per step: the input and the output side read the same vectors
        h = self.hidden_states(ids, table)
        row, pos = (targets != PAD_ID).nonzero(as_tuple=True)
        h, seq, tgt = h[row, pos], ids[row], targets[row, pos]
        if self.config.loss == "sampled_softmax":
            return self._sampled_loss(h, seq, pos, tgt, table)
        logits = self._project(h, seq, pos, table)  # padding is never a target, so its logit needs no mask
        return nn.functional.cross_entropy(logits.float(), tgt)

    def _sampled_loss(self, h: torch.Tensor, seq: torch.Tensor, pos: torch.Tensor, tgt: torch.Tensor,
                      emb: torch.Tensor) -> torch.Tensor:
        """Softmax over the target and shared uniform negatives (for big catalogues).

        The repeat channel adds to the target's and each negative's logit only,
        never to the whole catalogue (which is the cost sampled softmax avoids).
        """
        neg = torch.randint(1, self.config.n_items + 1, (self.config.num_negatives,), device=h.device)
        pos_logit = (h * emb[tgt]).sum(-1, keepdim=True) + self.out_bias[tgt].unsqueeze(-1)
        neg_logit = h @ emb[neg].T + self.out_bias[neg]
        if self.config.repeat:
            index, weights = self._repeat_terms(seq, pos)
            pos_logit = pos_logit + (weights * (index == tgt[:, None])).sum(-1, keepdim=True)
            # each distinct negative gets one column; items not among them land in the spare last column
            uniq, inverse = torch.unique(neg, return_inverse=True)
            slot = torch.full((self.config.n_items + 1,), len(uniq), dtype=torch.long, device=h.device)
            slot[uniq] = torch.arange(len(uniq), device=h.device)
            counts = torch.zeros(len(h), len(uniq) + 1, dtype=weights.dtype, device=h.device)
            counts = counts.scatter_add(1, slot[index], weights)
            neg_logit = neg_logit + counts[:, inverse].to(neg_logit.dtype)
        neg_logit = neg_logit.masked_fill(neg.unsqueeze(0) == tgt.unsqueeze(1), float("-inf"))
        logits = torch.cat([pos_logit, neg_logit], dim=-1)
        return nn.functional.cross_entropy(logits.float(), torch.zeros_like(tgt))

    @torch.inference_mode()
    def score(self, histories: list[np.ndarray], *, device: str | torch.device = "cpu") -> np.ndarray:
        """[B, V] next-item scores for each history (the Scorer protocol of train.metrics)."""
        ids = left_pad(histories, batch_width(histories, self.config.max_len)).to(device)
        return self.logits(ids, last_only=True)[:, 0].float().cpu().numpy()


def build_recommender(config: RecommenderConfig) -> nn.Module:
    """The model class of `config.arch`: the causal GPT-2 recommender or the masked-item BERT one."""
    if config.arch == "bert":
        return MaskedItemRecommender(config)
    return SequentialRecommender(config)



def training_windows(sequences: list[np.ndarray], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut each sequence into (input, next-item target) windows of `max_len`.

    Windows are taken from the end backwards so the most recent behaviour is
    always whole; each window's inputs are left-padded. Returns two [N, max_len]
    int64 arrays; targets are PAD_ID where there is no next item.
    """
    inputs, targets = [], []
    for seq in sequences:
        seq = np.asarray(seq, dtype=np.int64)
        end = len(seq)
        while end >= 2:
            start = max(0, end - max_len - 1)
            chunk = seq[start:end]
            x, y = chunk[:-1], chunk[1:]
            row_x = np.zeros(max_len, np.int64)
            row_y = np.zeros(max_len, np.int64)
            row_x[max_len - len(x) :] = x
            row_y[max_len - len(y) :] = y
            inputs.append(row_x)
            targets.append(row_y)
            end = start + 1 if start > 0 else 0
    if not inputs:
        return np.zeros((0, max_len), np.int64), np.zeros((0, max_len), np.int64)
    return np.stack(inputs), np.stack(targets)


def text_initialised_embeddings(
    texts: list[str | None], hidden: int, *, source: str = "default", seed: int = 0
) -> torch.Tensor:
    """[n_items + 1, hidden] item vectors from a text encoder, PCA-projected to `hidden`.

    Scaled to GPT-2's init std (0.02) so training starts from the usual range;
    items without text get small random vectors; row 0 (padding) is zero.
    """
    from ecomine.models.text_encoder import encode_texts

    rng = np.random.default_rng(seed)
    have = [i for i, t in enumerate(texts) if t]
    vecs = np.zeros((len(texts), hidden), np.float32)
    if have:
        enc = encode_texts([texts[i] for i in have], source=source)
        enc = enc - enc.mean(0, keepdims=True)
        k = min(hidden, enc.shape[1], max(1, len(have) - 1))
        u, s, vt = np.linalg.svd(enc, full_matrices=False)
        proj = enc @ vt[:k].T
        proj = proj / (proj.std() + 1e-8) * 0.02
        vecs[have, :k] = proj
        if k < hidden:
            vecs[have, k:] = rng.normal(0, 0.02, (len(have), hidden - k))
    missing = [i for i, t in enumerate(texts) if not t]
    if missing:
        vecs[missing] = rng.normal(0, 0.02, (len(missing), hidden))
    return torch.from_numpy(np.vstack([np.zeros((1, hidden), np.float32), vecs]))


def save_recommender(folder: str | Path, model, vocab: ItemVocab, *, popular: list[int]) -> None:
    """Write weights (safetensors) and config.json - or a baseline's arrays - plus items.json and popular.json."""
    from safetensors.torch import save_file

    from ecomine.models.recommend_baselines import BaselineRecommender, save_baseline

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(model, BaselineRecommender):  # a non-neural version: its fitted arrays instead of weights
        save_baseline(folder, model)
    else:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
        model.config.save(folder / "config.json")
    (folder / "items.json").write_text(json.dumps(vocab.to_json()))
    (folder / "popular.json").write_text(json.dumps({"items": popular}))


def load_recommender(folder: str | Path) -> tuple[SequentialRecommender, ItemVocab]:
    """Load a version folder written by `save_recommender`: the transformer or a baseline (checksums are the registry's job)."""
    from safetensors.torch import load_file

    from ecomine.models.recommend_baselines import BASELINE_FILE, load_baseline

    folder = Path(folder)
    if (folder / BASELINE_FILE).exists():
        model = load_baseline(folder)
    else:
        model = build_recommender(RecommenderConfig.load(folder / "config.json"))
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        model.eval()
    vocab = ItemVocab.from_json(json.loads((folder / "items.json").read_text()))
    return model, vocab
