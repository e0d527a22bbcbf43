"""The recommend task: purchase sequences -> next-item transformer, through the shared path.

Implements `ecomine.train.tasks.Task` for `task: recommend`: leave-one-out id
splits (`train.recommend_data`), GPT-2 item model (`models.recommend`), full-catalogue
validation, test report beside popularity / item-kNN / own-history baselines.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ecomine.train.recommend_data import RecommendData, prepare_recommend_data

if TYPE_CHECKING:
    from ecomine.models.item_tokens import ItemTokens

__all__ = ["RecommendTask", "TASK", "recommender_config", "augmented_copies", "resolved_dropout", "SPARSE_DENSITY",
           "resolved_loss", "FULL_SOFTMAX_MAX_ITEMS", "resolved_max_len", "AUTO_CONTEXT"]

# Below this density (training interactions / (users x items)) a log is sparse: SASRec (Kang & McAuley, 2018) trained
# MovieLens-1m (4.8 %) at dropout 0.2 and Amazon Beauty, Games and Steam (0.01-0.08 %) at 0.5. Measured here
# (README, issue 22): Amazon Toys (0.07 %) and Sports (0.045 %) gain +3.3 % / +6.5 % test NDCG@10 at 0.5
# over 0.3; the synthetic log (9.8 %) loses 3.9 % at 0.5; Online Retail (2.9 %) stays at 0.3, where it was tuned.
SPARSE_DENSITY = 0.01


def resolved_dropout(value: float | str, data: RecommendData | None) -> float:
    """``backbone.dropout`` as trained: a number as given; ``auto`` by the log's density (``SPARSE_DENSITY``)."""
    if value != "auto":
        return float(value)
    if data is None:
        raise ValueError("backbone.dropout: auto needs the training data to choose (give a number instead)")
    seqs = data.train_sequences  # what the model trains on: purchases per user, the held-out two left out
    density = sum(len(x) for x in seqs) / max(1, len(seqs) * data.n_items)
    return 0.5 if density < SPARSE_DENSITY else 0.3


# `max_len: auto`'s bounds: SASRec's two context lengths - 50 on the sparse Amazon and Steam logs (7-11 items a user),
# 200 on MovieLens-1m (163 a user). Between them the mean training sequence, rounded up to a multiple of 50: Amazon
# Toys and Sports (~7) and the synthetic log (28) stay at 50, Online Retail (132) reads 150 (README, issue 22).
AUTO_CONTEXT = (50, 200)


def resolved_max_len(value: int | str, data: RecommendData | None) -> int:
    """``backbone.max_len`` as trained: a number as given; ``auto`` by the mean training sequence (``AUTO_CONTEXT``)."""
    if value != "auto":
        return int(value)
    if data is None:
        raise ValueError("backbone.max_len: auto needs the training data to choose (give a number instead)")
    seqs = data.train_sequences
    mean = sum(len(x) for x in seqs) / max(1, len(seqs))
    lo, hi = AUTO_CONTEXT
    return int(min(hi, max(lo, lo * math.ceil(mean / lo))))


# Above this many items `loss: auto` samples negatives. A full softmax step's logits are [targets, items]: on short
# sequences a full step costs 2.4x a 1,000-negative sampled step at 12,101 items (Amazon Toys, where it reaches the
# published sampled-softmax SASRec: README), 6.0x at 50,000 and 9.3x at 100,000 (`python benchmarks/train_step.py
# --losses 12101,50000,100000`, one thread, load 1.4-2.0: benchmarks/results/train_step_losses.json); on Online
# Retail's long windows ~65x at 100k (7 GB of logits and gradients), at 300k items ~80 s and ~20 GB a step on 2 cores
# (a throw-away snippet, torch CPU, hidden 64): a run that never ends or runs out of memory.
FULL_SOFTMAX_MAX_ITEMS = 50_000


def resolved_loss(value: str, n_items: int, arch: str = "gpt2") -> str:
    """``model.loss`` as trained: as given, or ``auto`` by catalogue size (the masked-item model: always full)."""
    if value != "auto":
        return value
    return "full_softmax" if arch == "bert" or n_items <= FULL_SOFTMAX_MAX_ITEMS else "sampled_softmax"


def recommender_config(spec, n_items: int, data: RecommendData | None = None, tokens: ItemTokens | None = None):
    """The model's config for `spec`: sizes from the preset / backbone, dropout and context resolved on `data`, and the
    item-token vocabulary's size from `tokens` (None: no tokens, as when the spec turns them off)."""
    from ecomine.models.item_tokens import MAX_ITEM_TOKENS
    from ecomine.models.recommend import RecommenderConfig

    bb, m = spec.model.backbone, spec.model
    return RecommenderConfig(
        n_items=n_items, hidden=bb.hidden, layers=bb.layers, heads=bb.heads, max_len=resolved_max_len(bb.max_len, data),
        dropout=resolved_dropout(bb.dropout, data), repeat=m.repeat, loss=resolved_loss(m.loss, n_items, bb.arch),
        num_negatives=m.num_negatives,
        arch=bb.arch, mask_prob=m.mask_prob,
        item_tokens=tokens.size if tokens is not None else 0,
        max_item_tokens=tokens.index.shape[1] if tokens is not None else MAX_ITEM_TOKENS,
    )


def augmented_copies(sequences: list[np.ndarray], augment, seed: int) -> list[np.ndarray]:
    """`augment.copies` augmented copies of the training sequences (item ids; a masked item becomes padding)."""
    import polars as pl

    from ecomine.data.augment import augment_sequences

    # the augmenter works on item-id strings, vectorised in polars; ids go through as text and back
    as_text = pl.Series("items", [s.astype(str).tolist() for s in sequences], dtype=pl.List(pl.String))
    token = augment.sequences.mask.token
    out: list[np.ndarray] = []
    for k in range(augment.copies):
        aug = augment_sequences(as_text, augment.sequences, seed=augment.sequences.seed + 1000 * seed + k)
        ids = aug.list.eval(pl.element().replace(token, "0").cast(pl.Int64))
        out.extend(np.asarray(s, dtype=np.int64) for s in ids.to_list())
    return out


class _Prepared:
    """RecommendData plus the training windows cut once on the driver (augmented copies of the training split added)."""

    def __init__(self, data: RecommendData, max_len: int, augment=None, seed: int = 0) -> None:
        from ecomine.models.recommend import training_windows

        self.data = data
        on = augment is not None and augment.enabled()
        self.key = (max_len, augment.model_dump_json() if on else None, seed if on else None)
        sequences = list(data.train_sequences)
        if on:
            sequences += augmented_copies(data.train_sequences, augment, seed)
        self.inputs, self.targets = training_windows(sequences, max_len)
        self.lengths = (self.inputs != 0).sum(axis=1)  # real items per window (left-padded)
        self.targets_per_window = float((self.targets != 0).sum()) / max(1, len(self.targets))


def _key(spec, max_len: int) -> tuple:
    on = spec.augment is not None and spec.augment.enabled()
    return (max_len, spec.augment.model_dump_json() if on else None, spec.optim.seed if on else None)


class _DeviceScorer:
    def __init__(self, model, device) -> None:
        self.model, self.device = model, device

    def score(self, histories: list[np.ndarray]) -> np.ndarray:
        return self.model.score(histories, device=self.device)


class RecommendTask:
    name = "recommend"

    def prepare(self, spec) -> _Prepared:
        data = prepare_recommend_data(spec)
        prepared = _Prepared(data, resolved_max_len(spec.model.backbone.max_len, data), spec.augment, spec.optim.seed)
        if spec.model.item_tokens:
            prepared.data.item_tokens  # noqa: B018 - cut on the driver: workers and re-cut windows share it
        return prepared

    def adapt(self, prepared: _Prepared, spec) -> _Prepared:
        # a campaign searching max_len or augment settings shares one prepared split: re-cut its windows
        max_len = resolved_max_len(spec.model.backbone.max_len, prepared.data)
        if prepared.key == _key(spec, max_len):
            return prepared
        return _Prepared(prepared.data, max_len, spec.augment, spec.optim.seed)

    def driver_init(self, spec, prepared: _Prepared):
        if spec.model.item_init != "text":
            return None
        from ecomine.models.recommend import text_initialised_embeddings

        d = prepared.data
        return text_initialised_embeddings(
            d.vocab_texts, spec.model.backbone.hidden, source=spec.model.text_encoder, seed=spec.optim.seed
        ).numpy()

    def build_model(self, spec, prepared: _Prepared, init):
        import torch

        from ecomine.models.recommend import build_recommender

        tokens = prepared.data.item_tokens if spec.model.item_tokens else None
        model = build_recommender(recommender_config(spec, prepared.data.n_items, prepared.data, tokens))
        if model.item_tokens is not None:
            model.item_tokens.fill(tokens.index)
        if init is not None:
            with torch.no_grad():
                init = torch.as_tensor(init)  # [n_items + 1, H]; a bert model's extra [MASK] row keeps its init
                model.item_embeddings.weight[: init.shape[0]].copy_(init)
        return model

    def num_examples(self, prepared: _Prepared) -> int:
        return len(prepared.inputs)

    def epoch_order(self, prepared: _Prepared, rng: np.random.Generator, batch_size: int) -> np.ndarray:
        """Length-bucketed order: windows sorted by length (random among equals), cut into batches, the
        batches shuffled. Most windows of short-sequence data are a few items in 50 columns of padding,
        and a batch only costs its longest window (`batch` trims the rest): 2.3x fewer step seconds on
        Amazon Toys (median 3 items of 50). `batch` weights each batch's loss by its share of targets, so
        every target counts as much as under a random order."""
        n = len(prepared.inputs)
        shuffled = rng.permutation(n)
        by_length = shuffled[np.argsort(prepared.lengths[shuffled], kind="stable")]
        batches = [by_length[i : i + batch_size] for i in range(0, n, batch_size)]
        return np.concatenate([batches[i] for i in rng.permutation(len(batches))]) if batches else by_length

    def batch(self, prepared: _Prepared, index: np.ndarray, device) -> dict[str, Any]:
        import torch

        inputs, targets = prepared.inputs[index], prepared.targets[index]
        # leading columns that are padding in every row change no output (positions count from the first
        # real item); one is kept so the masked-item model's shift by one never drops a real item
        width = min(inputs.shape[1], int(prepared.lengths[index].max(initial=0)) + 1)
        weight = float((targets != 0).sum()) / max(1e-9, prepared.targets_per_window * len(index))
        return {
            "ids": torch.from_numpy(np.ascontiguousarray(inputs[:, -width:])).to(device),
            "targets": torch.from_numpy(np.ascontiguousarray(targets[:, -width:])).to(device),
            "weight": weight,
        }

    def validate(self, model, prepared: _Prepared, spec, device) -> dict[str, float]:
        from ecomine.train.recommend_metrics import evaluate_scorer

        d = prepared.data
        res = evaluate_scorer(
            _DeviceScorer(model, device), d.valid_histories, d.valid_targets,
            n_items=d.n_items + 1, ks=spec.eval.ks, pad_id=0,
        )
        out: dict[str, float] = {}
        for protocol, prefix in (("all_items", ""), ("new_items", "new_")):
            for k, v in res[protocol].items():
                if k not in ("n", "n_dropped"):
                    out[f"{prefix}{k.lower()}"] = v
        return out

    def evaluate(self, model, prepared: _Prepared, spec) -> dict[str, Any]:
        from ecomine.train.recommend_eval import evaluate_recommender

        return evaluate_recommender(model, prepared.data, ks=spec.eval.ks, split="test")

    def headline(self, results: dict[str, Any]) -> dict[str, Any]:
        from ecomine.train.recommend_eval import MODEL_NAME
        from ecomine.train.reports import report_json

        return report_json({MODEL_NAME: results[MODEL_NAME]})[MODEL_NAME]

    def save(self, folder: Path, model, prepared: _Prepared, spec) -> None:
        from ecomine.models.recommend import ItemVocab, save_recommender

        d = prepared.data
        counts = np.bincount(np.concatenate(d.train_sequences), minlength=d.n_items + 1)
        counts[0] = 0
        popular = [int(i) for i in np.argsort(-counts, kind="stable")[:100] if counts[i] > 0]
        save_recommender(folder, model, ItemVocab(items=d.vocab_items, texts=d.vocab_texts), popular=popular)

    def load(self, folder: Path, spec, prepared: _Prepared):
        from ecomine.models.recommend import load_recommender

        model, vocab = load_recommender(folder)
        if vocab.items != prepared.data.vocab_items:
            raise ValueError("the item catalogue of the data no longer matches the model's")
        return model

    def format_report(self, results: dict[str, Any], title: str):
        from ecomine.train.recommend_metrics import format_report

        return format_report(results, title=title)

    def fingerprint(self, prepared: _Prepared) -> str:
        return prepared.data.fingerprint

    def profile(self, folder: Path, model, prepared: _Prepared, spec):
        from ecomine.train.profiles import recommend_profile

        d = prepared.data
        return recommend_profile(model, d.train_sequences, d.test_histories, d.n_items, seed=spec.optim.seed)

    def warm_start_vocab(self, spec, prepared: _Prepared) -> tuple[list[str], list[str] | None]:
        d = prepared.data
        return d.vocab_items, d.item_tokens.vocab if spec.model.item_tokens else None  # tokens cut once, in prepare


TASK = RecommendTask()
