"""`backbone.max_len: auto`: the recommender's context length chosen by the training log's sequence lengths."""

from __future__ import annotations

import numpy as np
import pytest

from ecomine.train.recommend_data import RecommendData
from ecomine.train.recommend_task import AUTO_CONTEXT, RecommendTask, resolved_max_len


def _data(lengths: list[int], items: int = 500) -> RecommendData:
    seqs = [np.arange(1, n + 1) % items + 1 for n in lengths]
    empty = np.zeros(0, dtype=np.int64)
    return RecommendData(vocab_items=[str(i) for i in range(items)], vocab_texts=[None] * items, train_sequences=seqs,
                         valid_histories=[], valid_targets=empty, test_histories=[], test_targets=empty, test_users=[],
                         fingerprint="", n_users=len(lengths), n_events=sum(lengths))


def test_auto_reads_the_mean_sequence_rounded_up_to_fifty_within_sasrec_bounds() -> None:
    assert AUTO_CONTEXT == (50, 200)
    assert resolved_max_len("auto", _data([5, 7, 9])) == 50  # Amazon 5-core's shape
    assert resolved_max_len("auto", _data([20, 200, 176])) == 150  # mean 132: Online Retail's
    assert resolved_max_len("auto", _data([1000, 2000])) == 200  # capped
    assert resolved_max_len(30, _data([1000])) == 30  # a number is kept as given
    with pytest.raises(ValueError, match="backbone.max_len: auto needs the training data"):
        resolved_max_len("auto", None)


def test_the_windows_and_the_model_are_cut_at_the_resolved_length() -> None:
    from ecomine.specs import TrainSpec
    from ecomine.train.recommend_task import _Prepared, _key, recommender_config

    spec = TrainSpec.model_validate({"data": {"kind": "synthetic"},
                                   "model": {"backbone": {"kind": "from_config", "max_len": "auto", "dropout": 0.3}}})
    data = _data([120, 140, 136])  # mean 132 -> 150
    prepared = _Prepared(data, resolved_max_len(spec.model.backbone.max_len, data))
    assert prepared.inputs.shape[1] == 150 and prepared.key == _key(spec, 150)
    assert RecommendTask().adapt(prepared, spec) is prepared  # nothing to re-cut for the same resolved length
    assert recommender_config(spec, data.n_items, data).max_len == 150
    fixed = spec.model_copy(update={"model": spec.model.model_copy(update={
        "backbone": spec.model.backbone.model_copy(update={"max_len": 50})})})
    assert RecommendTask().adapt(prepared, fixed).inputs.shape[1] == 50


def test_the_spec_takes_auto_or_a_length_and_refuses_anything_else() -> None:
    from ecomine.specs.train import FromConfigBackbone

    assert FromConfigBackbone(kind="from_config").max_len == 50
    assert FromConfigBackbone(kind="from_config", max_len="auto").max_len == "auto"
    for bad in (1, "long"):
        with pytest.raises(ValueError):
            FromConfigBackbone(kind="from_config", max_len=bad)
