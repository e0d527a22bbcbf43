"""`explain: true` for recommend without Ray: occlusion on a real (untrained) transformer and on item-kNN.

Every contribution is checked against a second, independent call: the plain answer for the
history without that item. The served faithfulness figure (top vs random history item, on a
trained model) is in tests/integration/serve/test_explain_live.py.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest
import torch

from ecomine.models.recommend import ItemVocab, RecommenderConfig, SequentialRecommender
from ecomine.models.recommend_baselines import BaselineRecommender, ItemKNN, MostPopular
from ecomine.models.recommend_explain import occlusion_histories
from ecomine.predict.answers import finish_recommend, plan_recommend
from ecomine.predict.explain import explain_refusal
from ecomine.predict.recommend_task import explain_recommend
from ecomine.predict.runtime import build_state, run_jobs
from ecomine.predict.state import Member

N_ITEMS = 40
ITEMS = [f"i{n}" for n in range(N_ITEMS)]


def _member(version: str, model, weight: float = 1.0) -> Member:
    vocab = ItemVocab(items=list(ITEMS), texts=[f"title {i}" for i in ITEMS])
    return Member(version, version, weight, datetime.now(timezone.utc), [], (model, vocab), {})


def _transformer(seed: int) -> SequentialRecommender:
    torch.manual_seed(seed)
    model = SequentialRecommender(RecommenderConfig(n_items=N_ITEMS, hidden=16, layers=1, heads=2, max_len=8))
    with torch.no_grad():  # an untrained model's scores barely depend on the history; make them
        model.item_embeddings.weight.mul_(50)
    return model.eval()


def _plain(state, history: list[str], k: int = 5) -> dict[str, float]:
    job, ctx = plan_recommend(state, {"history": history, "k": k})
    row = None if job is None else run_jobs([(state, job)])[0]
    return {it["item_id"]: it["score"] for it in finish_recommend(state, ctx, row)["items"]}, row


def _explained(state, history: list[str], k: int = 5, **limits):
    job, ctx = plan_recommend(state, {"history": history, "k": k})
    return explain_recommend(state, ctx, job, limits)


HISTORY = ["i3", "i7", "i3", "i12", "i30", "i7", "i5", "i21", "i9", "i14", "i2"]  # 11 ids, 9 distinct; window 8


def test_occlusion_rows_are_the_windows_distinct_items_most_recent_first() -> None:
    ids = np.array([3, 7, 3, 12, 30, 7, 5], dtype=np.int64)
    distinct, rows = occlusion_histories(ids, max_len=4, max_items=10)
    assert distinct.tolist() == [5, 7, 30, 12]  # the last 4 ids, most recent first, each once
    assert rows[1].tolist() == [3, 3, 12, 30, 5]  # every 7 removed, the older 3s slide into the window
    assert occlusion_histories(ids, max_len=4, max_items=2)[0].tolist() == [5, 7]


@pytest.mark.parametrize("ensemble", [False, True])
def test_each_contribution_is_the_score_lost_without_that_history_item(ensemble: bool) -> None:
    members = [_member("t1", _transformer(1), 0.7)] + ([_member("t2", _transformer(2), 0.3)] if ensemble else [])
    state = build_state("recommend", members)
    answer, row = _explained(state, HISTORY, max_explain_items=5, max_explain_contributors=3, max_explain_history=50)
    plain, plain_row = _plain(state, HISTORY)
    assert np.allclose(row, plain_row, atol=1e-6)  # the answer is the plain call's
    assert [it["item_id"] for it in answer["items"]] == list(plain)
    assert answer["explanation"].startswith("occlusion") and ("ensemble" in answer["explanation"]) == ensemble
    checked = 0
    for it in answer["items"]:
        assert len(it["because"]) <= 3
        assert [b["contribution"] for b in it["because"]] == sorted((b["contribution"] for b in it["because"]), reverse=True)
        for b in it["because"]:
            assert b["contribution"] > 0 and b["title"] == f"title {b['item_id']}"
            _, without = _plain(state, [h for h in HISTORY if h != b["item_id"]])
            lost = it["score"] - without[ITEMS.index(it["item_id"]) + 1]
            assert lost == pytest.approx(b["contribution"], rel=1e-4, abs=1e-7)
            checked += 1
    assert checked >= 5


def test_an_ensembles_contributions_are_its_members_weighted() -> None:
    a, b = _transformer(1), _transformer(2)
    both = build_state("recommend", [_member("t1", a, 0.7), _member("t2", b, 0.3)])
    one_a, one_b = build_state("recommend", [_member("t1", a)]), build_state("recommend", [_member("t2", b)])
    answer, _ = _explained(both, HISTORY, max_explain_contributors=50)
    top = answer["items"][0]
    for c in top["because"]:
        without = [h for h in HISTORY if h != c["item_id"]]
        col = ITEMS.index(top["item_id"]) + 1
        parts = []
        for single in (one_a, one_b):
            full, drop = _plain(single, HISTORY)[1], _plain(single, without)[1]
            parts.append(full[col] - drop[col])
        assert c["contribution"] == pytest.approx(0.7 * parts[0] + 0.3 * parts[1], rel=1e-4, abs=1e-7)


def test_limits_bound_what_is_explained() -> None:
    state = build_state("recommend", [_member("t1", _transformer(3))])
    answer, _ = _explained(state, HISTORY, k=6, max_explain_items=2, max_explain_history=3, max_explain_contributors=1)
    explained = [it for it in answer["items"] if it["because"] is not None]
    assert len(answer["items"]) == 6 and len(explained) == 2
    assert all(len(it["because"]) <= 1 for it in explained)
    assert all(b["item_id"] in ("i2", "i14", "i9") for it in explained for b in it["because"])  # the 3 most recent
    assert "3 most recent distinct history items tried" in answer["explanation"]


def test_a_history_of_one_item_and_a_fallback_explain_without_failing() -> None:
    state = build_state("recommend", [_member("t1", _transformer(4))])
    answer, _ = _explained(state, ["i3", "i3"])
    assert all(np.isfinite(b["contribution"]) for it in answer["items"] for b in it["because"])
    fallback, row = _explained(state, ["not-an-item"])
    assert row is None and fallback["fallback"] and "fallback" in fallback["explanation"]


def test_item_knn_explains_and_the_popularity_baseline_is_refused() -> None:
    seqs = [np.array(s) for s in ([1, 2, 3], [2, 3, 4], [1, 3, 5], [4, 5, 6], [1, 2, 6])]
    knn = BaselineRecommender("item_knn", ItemKNN(N_ITEMS + 1, pad_id=0).fit(seqs))
    state = build_state("recommend", [_member("knn", knn)])
    assert explain_refusal(state) is None
    answer, _ = _explained(state, ["i0", "i1"], k=3)
    assert any(it["because"] for it in answer["items"])
    popular = build_state("recommend", [_member("knn", knn), _member("pop", BaselineRecommender("most_popular", MostPopular(N_ITEMS + 1, pad_id=0).fit(seqs)))])
    why = explain_refusal(popular)
    assert why is not None and why.startswith("recommend/pop cannot explain") and "popularity" in why
