"""`backbone.dropout: auto`: the recommender's dropout chosen by the training log's sparsity."""

from __future__ import annotations

import numpy as np
import pytest

from ecomine.train.recommend_data import RecommendData
from ecomine.train.recommend_task import SPARSE_DENSITY, resolved_dropout


def _data(users: int, items: int, per_user: int) -> RecommendData:
    seqs = [np.arange(1, per_user + 1) for _ in range(users)]
    empty = np.zeros(0, dtype=np.int64)
    return RecommendData(vocab_items=[str(i) for i in range(items)], vocab_texts=[None] * items, train_sequences=seqs,
                         valid_histories=[], valid_targets=empty, test_histories=[], test_targets=empty, test_users=[],
                         fingerprint="", n_users=users, n_events=users * per_user)


def test_auto_is_heavy_dropout_on_a_sparse_log_and_lighter_on_a_dense_one() -> None:
    sparse = _data(users=1000, items=10_000, per_user=7)  # 0.07 %: Amazon 5-core's shape
    dense = _data(users=1000, items=300, per_user=27)  # 9 %: the synthetic log's shape
    assert 7 / 10_000 < SPARSE_DENSITY < 27 / 300
    assert resolved_dropout("auto", sparse) == 0.5 and resolved_dropout("auto", dense) == 0.3
    assert resolved_dropout(0.15, sparse) == 0.15  # a number is kept as given
    with pytest.raises(ValueError, match="backbone.dropout: auto needs the training data"):
        resolved_dropout("auto", None)


def test_the_spec_takes_auto_or_a_rate_and_refuses_anything_else() -> None:
    from ecomine.specs.train import FromConfigBackbone

    assert FromConfigBackbone(kind="from_config").dropout == "auto"
    assert FromConfigBackbone(kind="from_config", dropout=0.2).dropout == 0.2
    for bad in (1.0, -0.1, "high"):
        with pytest.raises(ValueError):
            FromConfigBackbone(kind="from_config", dropout=bad)
