"""Baselines on tiny sequences with obvious answers, pad handling, and scale."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ecomine.models import recommend_baselines as baselines
from ecomine.models.recommend_baselines import (
    ItemKNN,
    MostPopular,
    RecentHistory,
    UserHistory,
    fit_baselines,
)
from ecomine.train.recommend_metrics import Scorer, evaluate_scorer


def seqs(*lists: list[int]) -> list[np.ndarray]:
    return [np.array(x, dtype=np.int64) for x in lists]


def order(scores_row: np.ndarray) -> list[int]:
    """Item ids best first (stable on ties, by id)."""
    return np.argsort(-scores_row, kind="stable").tolist()


ALL = [MostPopular, ItemKNN, UserHistory, RecentHistory]


def test_all_is_complete() -> None:
    public = {
        n
        for n in dir(baselines)
        if not n.startswith("_")
        and getattr(getattr(baselines, n), "__module__", None) == baselines.__name__
    }
    assert public <= set(baselines.__all__)  # every public class/function is exported
    assert all(hasattr(baselines, n) for n in baselines.__all__)  # and every export exists (constants too)


# ---------------------------------------------------------------- MostPopular


def test_most_popular_orders_by_count() -> None:
    model = MostPopular(5).fit(seqs([1, 2, 2], [2, 3], [3, 2, 4]))
    scores = model.score(seqs([1], []))
    assert scores.shape == (2, 5) and scores.dtype == np.float32
    assert order(scores[0])[:4] == [2, 3, 1, 4]
    np.testing.assert_array_equal(scores[0], scores[1])  # same for every user
    np.testing.assert_array_equal(scores[0], [0, 1, 4, 2, 1])


def test_most_popular_recency_weighting() -> None:
    # Item 1 bought often but long ago, item 2 once, recently.
    train = seqs([1, 1, 1, 2])
    assert order(MostPopular(3).fit(train).score(seqs([]))[0])[0] == 1
    by_position = MostPopular(3, half_life=0.5).fit(train)
    # weights: item 2 age 0 -> 1; item 1 ages 1,2,3 -> 0.25 + 0.0625 + 0.015625
    np.testing.assert_allclose(by_position.weights, [0, 0.328125, 1.0])
    assert order(by_position.score(seqs([]))[0])[0] == 2
    by_age = MostPopular(3, half_life=10.0).fit(train, ages=[np.array([0.0, 0.0, 0.0, 10.0])])
    np.testing.assert_allclose(by_age.weights, [0, 3.0, 0.5])


def test_most_popular_rejects_mismatched_ages() -> None:
    with pytest.raises(ValueError, match="ages 0 has 1 values for 2 items"):
        MostPopular(3, half_life=1.0).fit(seqs([1, 2]), ages=[np.array([0.0])])


# ---------------------------------------------------------------- ItemKNN


def test_item_knn_recommends_the_co_bought_item() -> None:
    train = seqs([1, 2], [1, 2], [3, 4], [3, 4], [5, 6], [5], [5], [5])
    model = ItemKNN(7).fit(train)
    scores = model.score(seqs([1], [3], [6]))
    assert order(scores[0])[0] == 2
    assert order(scores[1])[0] == 4
    assert order(scores[2])[0] == 5


def test_item_knn_cosine_by_hand() -> None:
    # users(1)=3, users(2)=2, users(3)=1, users(1,2)=2, users(1,3)=1, users(2,3)=0
    model = ItemKNN(4).fit(seqs([1, 2], [2, 1, 1], [1, 3]))
    sim = model.similarity.toarray()
    assert sim[1, 2] == pytest.approx(2 / np.sqrt(3 * 2))
    assert sim[1, 3] == pytest.approx(1 / np.sqrt(3 * 1))
    assert sim[2, 3] == 0
    np.testing.assert_array_equal(np.diag(sim), 0)
    np.testing.assert_allclose(sim, sim.T)


def test_item_knn_recency_weights_the_latest_item_most() -> None:
    train = seqs([1, 2], [1, 2], [3, 4], [3, 4])
    model = ItemKNN(5, decay=0.5).fit(train)
    row = model.score(seqs([1, 3]))[0]
    assert order(row)[:2] == [4, 2]
    assert row[4] == pytest.approx(1.0, abs=1e-6)  # sim(3, 4) = 1, weight 0.5**0
    assert row[2] == pytest.approx(0.5, abs=1e-6)  # sim(1, 2) = 1, weight 0.5**1
    old = ItemKNN(5, last_n=1).fit(train).score(seqs([1, 3]))[0]
    assert old[2] < 1e-6  # item 1 is beyond the last 1 event: no contribution


def test_item_knn_window() -> None:
    train = seqs([1, 2, 3, 4, 5])
    unwindowed = ItemKNN(6).fit(train).similarity.toarray()
    windowed = ItemKNN(6, window=1).fit(train).similarity.toarray()
    assert unwindowed[1, 3] > 0 and windowed[1, 3] == 0
    assert windowed[1, 2] == pytest.approx(1.0) and windowed[2, 3] == pytest.approx(1.0)


def test_item_knn_wide_window_equals_no_window() -> None:
    rng = np.random.default_rng(3)
    train = [rng.integers(0, 30, size=rng.integers(1, 12)) for _ in range(80)]
    full = ItemKNN(30).fit(train).similarity.toarray()
    wide = ItemKNN(30, window=12).fit(train).similarity.toarray()
    np.testing.assert_allclose(full, wide, rtol=1e-6)


def test_item_knn_neighbours_prunes_to_top_k() -> None:
    rng = np.random.default_rng(4)
    train = [rng.integers(0, 20, size=8) for _ in range(50)]
    full = ItemKNN(20).fit(train).similarity
    pruned = ItemKNN(20, neighbours=3).fit(train).similarity
    assert (np.diff(pruned.indptr) <= 3).all()
    dense_full, dense_pruned = full.toarray(), pruned.toarray()
    for r in range(20):
        kept = dense_pruned[r][dense_pruned[r] > 0]
        best = np.sort(dense_full[r])[::-1][: kept.size]
        assert np.sort(kept)[::-1].tolist() == pytest.approx(best.tolist())


def test_item_knn_unknown_items_ordered_by_popularity() -> None:
    model = ItemKNN(6).fit(seqs([1, 2], [3, 3, 3], [4, 4], [3]))
    row = model.score(seqs([]))[0]  # nothing to go on: popularity order
    assert order(row)[:4] == [3, 4, 1, 2] or order(row)[:4] == [3, 4, 2, 1]
    assert row[3] > row[4] > row[1] > row[5]


# ---------------------------------------------------------------- history baselines


def test_user_history_most_frequent_first_then_recent_then_popular() -> None:
    model = UserHistory(8).fit(seqs([7, 7, 7, 7], [6, 6, 6], [5]))
    row = model.score(seqs([1, 2, 2, 3, 1, 4, 2]))[0]
    # counts: 2 -> 3, 1 -> 2, 3 and 4 -> 1 (4 more recent); then unseen by popularity
    assert order(row)[:7] == [2, 1, 4, 3, 7, 6, 5]


def test_recent_history_most_recent_first() -> None:
    model = RecentHistory(8).fit(seqs([7, 7, 7, 7], [6, 6, 6], [5]))
    row = model.score(seqs([1, 2, 2, 3, 1, 4, 2]))[0]
    assert order(row)[:7] == [2, 4, 1, 3, 7, 6, 5]


def test_history_baselines_with_empty_history_fall_back_to_popularity() -> None:
    train = seqs([3, 3, 1], [3, 2, 2, 2, 2])
    for cls in (UserHistory, RecentHistory):
        row = cls(4).fit(train).score(seqs([]))[0]
        assert order(row) == [2, 3, 1, 0], cls.__name__


# ---------------------------------------------------------------- all baselines


@pytest.mark.parametrize("cls", ALL)
def test_pad_id_is_never_ranked(cls) -> None:
    # Pad is by far the most frequent token in training and in the history.
    train = seqs([0, 0, 0, 1, 2], [0, 0, 0, 0, 2, 3], [0, 1, 2])
    model = cls(4, pad_id=0).fit(train)
    scores = model.score(seqs([0, 0, 1], [0], []))
    assert scores.shape == (3, 4) and scores.dtype == np.float32
    assert np.isneginf(scores[:, 0]).all()
    assert np.isfinite(scores[:, 1:]).all()
    assert model.popularity[0] == 0
    res = evaluate_scorer(model, seqs([1], [2]), np.array([2, 3]), n_items=4, pad_id=0)
    assert res["all_items"]["n"] == 2


@pytest.mark.parametrize("cls", ALL)
def test_unfitted_scorer_says_so(cls) -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        cls(3).score(seqs([1]))


@pytest.mark.parametrize("cls", ALL)
def test_out_of_range_ids_name_the_sequence(cls) -> None:
    with pytest.raises(ValueError, match="training sequence 1 holds item id 9"):
        cls(4).fit(seqs([1, 2], [3, 9]))
    with pytest.raises(ValueError, match="pad_id 4"):
        cls(4, pad_id=4)


@pytest.mark.parametrize("cls", ALL)
def test_scores_rank_the_full_catalogue(cls) -> None:
    # Every item seen in training gets a distinct score for a user who saw nothing.
    train = seqs(*[[i] * i for i in range(1, 9)])
    row = cls(9).fit(train).score(seqs([]))[0]
    assert len(set(row[1:].tolist())) == 8


def test_fit_baselines_standard_set() -> None:
    train = seqs([1, 2, 3], [2, 3], [1, 3, 3])
    models = fit_baselines(train, 4, pad_id=0)
    assert list(models) == ["most_popular", "item_knn", "user_history", "recent_history"]
    for name, model in models.items():
        assert isinstance(model, Scorer), name
        assert model.score(seqs([1, 2])).shape == (1, 4)
    assert isinstance(models["item_knn"], ItemKNN)
    assert models["item_knn"].decay == 0.5 and models["item_knn"].last_n == 10


def _clustered_sequences(rng: np.random.Generator, n_users: int, n_items: int, n_clusters: int):
    """Users buy within one cluster of items; popularity is flat across clusters."""
    size = (n_items - 1) // n_clusters
    out = []
    for _ in range(n_users):
        c = rng.integers(n_clusters)
        out.append(1 + c * size + rng.integers(0, size, size=rng.integers(4, 12)))
    return out


def test_item_knn_beats_popularity_on_clustered_data() -> None:
    rng = np.random.default_rng(5)
    train = _clustered_sequences(rng, 400, 201, 20)
    test = _clustered_sequences(rng, 200, 201, 20)
    histories, targets = [s[:-1] for s in test], np.array([s[-1] for s in test])
    models = fit_baselines(train, 201, pad_id=0)
    res = {
        name: evaluate_scorer(m, histories, targets, n_items=201, pad_id=0)
        for name, m in models.items()
    }
    knn, pop = res["item_knn"]["new_items"], res["most_popular"]["new_items"]
    assert knn["HR@10"] > 0.6 > 3 * pop["HR@10"]
    assert res["user_history"]["all_items"]["MRR"] > res["most_popular"]["all_items"]["MRR"]


def test_fit_and_evaluate_at_catalogue_scale() -> None:
    # About the size of Online Retail: 6k users, 5k items, 800k events. Behaviour at that size (every
    # baseline fits, item-kNN scores every user); the seconds are printed, never asserted (a busy
    # machine would fail a bound).
    rng = np.random.default_rng(6)
    n_items = 5000
    p = 1.0 / np.arange(1, n_items) ** 0.8
    p /= p.sum()
    lengths = rng.geometric(1 / 133, size=6000)
    train = [rng.choice(np.arange(1, n_items), size=n, p=p) for n in lengths]
    start = time.perf_counter()
    models = fit_baselines(train, n_items, pad_id=0)
    fit_s = time.perf_counter() - start
    assert {"most_popular", "item_knn"} <= set(models)
    histories, targets = [s[:-1] for s in train[:1000]], np.array([s[-1] for s in train[:1000]])
    start = time.perf_counter()
    metrics = evaluate_scorer(models["item_knn"], histories, targets, n_items=n_items, pad_id=0)
    eval_s = time.perf_counter() - start
    print(f"[baselines] fit {fit_s:.1f} s, item-kNN evaluation of 1k users {eval_s:.1f} s")
    assert metrics["all_items"]["n"] == 1000 and 0.0 < metrics["all_items"]["HR@10"] <= 1.0


@pytest.mark.parametrize("kind", ["most_popular", "item_knn", "user_history", "recent_history"])
def test_a_saved_baseline_scores_as_the_fitted_one(tmp_path, kind):
    from ecomine.models.recommend import ItemVocab, load_recommender, save_recommender
    from ecomine.models.recommend_baselines import BASELINE_KINDS, BaselineRecommender

    rng = np.random.default_rng(0)
    seqs = [rng.integers(1, 30, rng.integers(2, 12)) for _ in range(80)]
    model = BaselineRecommender(kind, BASELINE_KINDS[kind](30, pad_id=0).fit(seqs))
    save_recommender(tmp_path, model, ItemVocab(items=[f"i{i}" for i in range(29)]), popular=[1, 2])
    loaded, vocab = load_recommender(tmp_path)
    assert loaded.kind == kind and len(vocab) == 29
    assert not list(tmp_path.glob("*.pt")) and (tmp_path / "baseline.safetensors").exists()
    hist = [np.array([3, 4, 5]), np.array([7])]
    np.testing.assert_array_equal(loaded.score(hist, device="cpu"), model.score(hist))
