"""Item tokens: which tokens an item text gives, how they add to the item vectors, and that versions keep them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecomine.models.item_tokens import ItemTokenEmbedding, item_tokens
from ecomine.models.recommend import ItemVocab, RecommenderConfig, build_recommender, load_recommender, save_recommender
from ecomine.train.warm_start import warm_start_state


def test_tokens_shared_by_two_items_and_at_most_half_are_kept_rarest_first():
    texts = ["attributes 7 12", "attributes 7 99", "Red MUG, red", None, "attributes 12 7", "mug blue 7"]
    tokens = item_tokens(texts, max_tokens=2)
    # "attributes" is on 3 of 6 items (kept at max_share 0.5), "7" on 4 (dropped), "99" / "blue" on one
    assert tokens.vocab == ["12", "attributes", "mug"]
    ids = {w: i + 1 for i, w in enumerate(tokens.vocab)}
    assert tokens.index.shape == (7, 2)
    assert tokens.index[0].tolist() == [0, 0]  # padding
    assert tokens.index[1].tolist() == [ids["12"], ids["attributes"]]  # "12" (2 items) before "attributes" (3)
    assert tokens.index[2].tolist() == [ids["attributes"], 0]
    assert tokens.index[3].tolist() == [ids["mug"], 0]  # case folded, punctuation dropped, once per item
    assert tokens.index[4].tolist() == [0, 0]  # no text


def test_an_item_vector_is_its_id_vector_plus_its_tokens_mean():
    emb = ItemTokenEmbedding(n_items=3, n_tokens=2, max_tokens=2, hidden=4)
    emb.fill(np.array([[0, 0], [1, 2], [2, 0], [0, 0]]))
    ids = torch.randn(5, 4)  # 3 items + padding + a [MASK] row
    table = emb.table(ids)
    bag = emb.bag.weight
    torch.testing.assert_close(table[1], ids[1] + (bag[1] + bag[2]) / 2)
    torch.testing.assert_close(table[2], ids[2] + bag[2])  # the empty slot is not counted in the mean
    torch.testing.assert_close(table[[0, 3, 4]], ids[[0, 3, 4]])  # no token, and the [MASK] row
    with pytest.raises(ValueError, match="does not fit"):
        emb.fill(np.zeros((3, 2), np.int64))


@pytest.mark.parametrize("arch", ["gpt2", "bert"])
def test_a_version_with_tokens_trains_and_scores_the_same_after_loading(tmp_path, arch):
    texts = [f"brand {i % 5} kind {i % 3}" for i in range(40)]
    tokens = item_tokens(texts)
    torch.manual_seed(0)
    model = build_recommender(RecommenderConfig(n_items=40, hidden=16, layers=1, heads=2, max_len=8, arch=arch,
                                                item_tokens=tokens.size))
    model.item_tokens.fill(tokens.index)
    ids = torch.tensor([[0, 3, 8, 13], [1, 2, 3, 4]])
    targets = torch.tensor([[0, 8, 13, 18], [2, 3, 4, 5]])
    before = model.item_tokens.bag.weight.detach().clone()
    model.loss(ids, targets).backward()
    torch.optim.SGD(model.parameters(), lr=1.0).step()
    assert not torch.equal(model.item_tokens.bag.weight, before)  # the token vectors learn
    model.eval()
    hist = [np.array([3, 8, 13]), np.array([1])]
    save_recommender(tmp_path, model, ItemVocab(items=[str(i) for i in range(40)], texts=texts), popular=[1])
    loaded, _ = load_recommender(tmp_path)
    assert loaded.config.item_tokens == tokens.size
    np.testing.assert_allclose(loaded.score(hist), model.score(hist), rtol=1e-5, atol=1e-6)


def test_warm_start_matches_token_vectors_by_token_and_keeps_this_runs_index(tmp_path):
    old_texts = ["a x", "a y", "b x", "b y"]
    new_texts = ["b x", "c y", "c x", "b y", "a"]  # tokens a, b, x, y before; b, c, x, y now
    old_tokens, new_tokens = item_tokens(old_texts), item_tokens(new_texts)

    def model(texts, tokens, seed):
        torch.manual_seed(seed)
        m = build_recommender(RecommenderConfig(n_items=len(texts), hidden=8, layers=1, heads=2, max_len=4,
                                                item_tokens=tokens.size))
        m.item_tokens.fill(tokens.index)
        return m

    old = model(old_texts, old_tokens, 1)
    save_recommender(tmp_path, old, ItemVocab(items=[f"i{k}" for k in range(4)], texts=old_texts), popular=[1])
    new = model(new_texts, new_tokens, 2)
    fresh = new.item_tokens.bag.weight.detach().clone()
    warm = warm_start_state(tmp_path, new, [f"i{k}" for k in range(5)], new_tokens.vocab)
    assert "item_tokens.index" in warm.skipped and "item_tokens.index" not in warm.state
    rows = warm.state["item_tokens.bag.weight"]
    old_bag = old.item_tokens.bag.weight.detach().numpy()
    for token in ("b", "x", "y"):
        assert np.array_equal(rows[new_tokens.vocab.index(token) + 1], old_bag[old_tokens.vocab.index(token) + 1])
    assert np.array_equal(rows[new_tokens.vocab.index("c") + 1], fresh[new_tokens.vocab.index("c") + 1].numpy())


def test_the_table_kept_for_inference_follows_a_weight_change():
    emb = ItemTokenEmbedding(n_items=3, n_tokens=2, max_tokens=2, hidden=4)
    emb.fill(np.array([[0, 0], [1, 2], [2, 0], [0, 0]]))
    ids = torch.randn(4, 4)
    with torch.inference_mode():
        first = emb.table(ids)
        assert emb.table(ids) is first  # kept while nothing changed
    with torch.no_grad():
        emb.bag.weight.mul_(2)  # as load_state_dict or a training step would
    with torch.inference_mode():
        again = emb.table(ids)
    assert again is not first
    torch.testing.assert_close(again, ids + emb.bag(emb.index).detach())
    assert emb.table(ids).requires_grad  # outside inference the table is built fresh, in the graph
