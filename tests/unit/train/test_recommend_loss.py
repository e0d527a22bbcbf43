"""`model.loss: auto`: a full softmax up to FULL_SOFTMAX_MAX_ITEMS, sampled negatives above (a big catalogue)."""

from __future__ import annotations

import pytest
import torch

from ecomine.specs import TrainSpec
from ecomine.train.recommend_task import FULL_SOFTMAX_MAX_ITEMS, recommender_config, resolved_loss


def _spec(**model) -> TrainSpec:
    return TrainSpec.model_validate({"data": {"kind": "synthetic"}, "model": {"preset": "recommend_small",
                                                                              "backbone": {"dropout": 0.3}, **model}})


def test_auto_is_full_up_to_the_limit_and_sampled_above_it() -> None:
    assert _spec().model.loss == "auto"
    assert resolved_loss("auto", 12_000) == "full_softmax"  # Amazon Toys' catalogue
    assert resolved_loss("auto", FULL_SOFTMAX_MAX_ITEMS) == "full_softmax"
    assert resolved_loss("auto", FULL_SOFTMAX_MAX_ITEMS + 1) == "sampled_softmax"
    assert resolved_loss("auto", 300_000, "bert") == "full_softmax"  # the masked-item model has no sampled loss
    assert resolved_loss("full_softmax", 300_000) == "full_softmax"  # as given
    assert resolved_loss("sampled_softmax", 300) == "sampled_softmax"


def test_a_big_catalogue_trains_on_sampled_negatives_and_the_config_says_so() -> None:
    from ecomine.models.recommend import build_recommender

    n_items = FULL_SOFTMAX_MAX_ITEMS + 10_000
    config = recommender_config(_spec(), n_items)
    assert config.loss == "sampled_softmax" and config.num_negatives == 1000
    assert recommender_config(_spec(), 12_000).loss == "full_softmax"
    model = build_recommender(config)
    ids = torch.randint(1, n_items + 1, (4, 12))
    loss = model.loss(ids[:, :-1], ids[:, 1:])
    assert torch.isfinite(loss) and loss.item() > 0


def test_bert_refuses_sampled_softmax_but_takes_auto() -> None:
    assert _spec(backbone={"arch": "bert", "dropout": 0.3}).model.loss == "auto"
    with pytest.raises(ValueError, match="backbone.arch bert trains with loss full_softmax"):
        _spec(backbone={"arch": "bert", "dropout": 0.3}, loss="sampled_softmax")
