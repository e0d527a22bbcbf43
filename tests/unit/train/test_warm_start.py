"""Warm start: a champion's weights line up with a new run's model, item rows matched by item id."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecomine.models.recommend import ItemVocab, RecommenderConfig, build_recommender, save_recommender
from ecomine.train.warm_start import warm_start_state


def _model(n_items: int, arch: str = "gpt2", seed: int = 0):
    torch.manual_seed(seed)
    return build_recommender(RecommenderConfig(n_items=n_items, hidden=16, layers=1, heads=2, max_len=8, arch=arch))


@pytest.mark.parametrize("arch", ["gpt2", "bert"])
def test_item_rows_follow_their_item_ids_and_new_items_keep_their_init(tmp_path, arch):
    old_items = ["a", "b", "c", "d"]
    old = _model(len(old_items), arch, seed=1)
    save_recommender(tmp_path, old, ItemVocab(items=old_items, texts=[None] * 4), popular=[1])
    new_items = ["c", "e", "a"]  # c and a survive (other ids), b and d left, e is new
    new = _model(len(new_items), arch, seed=2)
    fresh = {k: v.clone() for k, v in new.state_dict().items()}
    warm = warm_start_state(tmp_path, new, new_items)
    new.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in warm.state.items()}, strict=False)
    assert warm.shared_items == 2 and warm.remapped and not warm.skipped
    old_sd, new_sd = old.state_dict(), new.state_dict()
    for name in warm.remapped:
        assert torch.equal(new_sd[name][1], old_sd[name][3])  # c: old id 3 -> new id 1
        assert torch.equal(new_sd[name][3], old_sd[name][1])  # a: old id 1 -> new id 3
        assert torch.equal(new_sd[name][2], fresh[name][2])  # e: new, keeps its init
        assert torch.equal(new_sd[name][0], old_sd[name][0])  # padding row
    for name in warm.copied:
        assert torch.equal(new_sd[name], old_sd[name])


def test_a_folder_without_weights_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="holds no model.safetensors"):
        warm_start_state(tmp_path, _model(3), ["a", "b", "c"])
