"""Full-catalogue ranking metrics: known answers, the tie rule, masking, both protocols."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from rich.console import Console
from rich.table import Table

from ecomine.train import recommend_metrics as metrics
from ecomine.train.recommend_metrics import (
    Scorer,
    evaluate_scorer,
    format_report,
    rank_of_targets,
    ranking_metrics,
)
from ecomine.train.reports import report_json


class RowsScorer:
    """Returns the rows of a fixed matrix in call order (checks batching keeps order)."""

    def __init__(self, matrix: np.ndarray) -> None:
        self.matrix = np.asarray(matrix, dtype=np.float32)
        self.cursor = 0
        self.batches: list[int] = []

    def score(self, histories: list[np.ndarray]) -> np.ndarray:
        rows = self.matrix[self.cursor : self.cursor + len(histories)]
        self.cursor += len(histories)
        self.batches.append(len(histories))
        return rows


def brute_force_rank(row: np.ndarray, target: int, masked: set[int]) -> int:
    t = row[target]
    if math.isnan(t):
        return sum(1 for j in range(len(row)) if j != target and j not in masked)
    return sum(
        1
        for j, s in enumerate(row)
        if j != target and j not in masked and not math.isnan(s) and s >= t
    )


def test_all_is_complete() -> None:
    public = {n for n in dir(metrics) if not n.startswith("_")}
    defined_here = {
        n for n in public if getattr(getattr(metrics, n), "__module__", None) == metrics.__name__
    }
    assert defined_here <= set(metrics.__all__)
    assert all(hasattr(metrics, n) for n in metrics.__all__)


# ---------------------------------------------------------------- rank_of_targets


def test_rank_by_hand() -> None:
    scores = np.array(
        [
            [0.1, 0.5, 0.3, 0.2],  # target 1 is best -> 0
            [0.1, 0.5, 0.3, 0.2],  # target 2: only item 1 above -> 1
            [0.1, 0.5, 0.3, 0.2],  # target 0 is worst -> 3
            [0.4, 0.1, 0.9, 0.2],  # target 3: items 0 and 2 above -> 2
        ],
        dtype=np.float32,
    )
    ranks = rank_of_targets(scores, np.array([1, 2, 0, 3]))
    assert ranks.tolist() == [0, 1, 3, 2]
    assert ranks.dtype == np.int64


def test_ties_count_against_the_target() -> None:
    # Pessimistic rule: every other item with an equal score ranks above the target.
    scores = np.array([[0.5, 0.5, 0.5, 0.1], [0.2, 0.7, 0.7, 0.7]])
    assert rank_of_targets(scores, np.array([0, 0])).tolist() == [2, 3]
    constant = np.zeros((3, 6), dtype=np.float32)
    assert rank_of_targets(constant, np.array([0, 3, 5])).tolist() == [5, 5, 5]


def test_nan_scores_rank_below_numbers() -> None:
    scores = np.array([[np.nan, 0.1, 0.2], [np.nan, np.nan, 0.2], [0.3, np.nan, -np.inf]])
    # Row 0: NaN target is last among 3 items. Row 1: NaN target, pessimistic -> last.
    # Row 2: target -inf still beats the NaN item.
    assert rank_of_targets(scores, np.array([0, 0, 2])).tolist() == [2, 2, 1]


def test_exclude_masks_items_but_never_the_target() -> None:
    scores = np.array([[0.9, 0.8, 0.7, 0.1], [0.9, 0.8, 0.7, 0.1]])
    targets = np.array([2, 2])
    assert rank_of_targets(scores, targets).tolist() == [2, 2]
    ranks = rank_of_targets(scores, targets, exclude=[np.array([0]), np.array([0, 1, 2])])
    # Row 0: item 0 masked -> only item 1 above. Row 1: target listed but stays rankable.
    assert ranks.tolist() == [1, 0]


def test_exclude_masking_takes_masked_items_out_of_ties() -> None:
    scores = np.zeros((1, 5))
    assert rank_of_targets(scores, np.array([4]), exclude=[np.array([0, 1, 2])]).tolist() == [1]


def test_pad_id_is_never_ranked() -> None:
    scores = np.array([[9.0, 0.1, 0.5, 0.3]])
    assert rank_of_targets(scores, np.array([2])).tolist() == [1]
    assert rank_of_targets(scores, np.array([2]), pad_id=0).tolist() == [0]
    with pytest.raises(ValueError, match="pad id 0"):
        rank_of_targets(scores, np.array([0]), pad_id=0)


def test_rank_of_targets_does_not_modify_scores() -> None:
    scores = np.array([[0.1, 0.5, 0.3]], dtype=np.float32)
    before = scores.copy()
    rank_of_targets(scores, np.array([1]), exclude=[np.array([2])], pad_id=0)
    np.testing.assert_array_equal(scores, before)


@pytest.mark.parametrize(
    ("scores", "targets", "message"),
    [
        (np.zeros(4), np.array([0]), "2-D"),
        (np.zeros((2, 4)), np.array([0]), "shape"),
        (np.zeros((1, 4)), np.array([4]), "target item id 4"),
        (np.zeros((1, 4)), np.array([-1]), "target item id -1"),
        (np.zeros((1, 4)), np.array([1.0]), "integer"),
    ],
)
def test_rank_of_targets_rejects_bad_input(scores, targets, message) -> None:
    with pytest.raises(ValueError, match=message):
        rank_of_targets(scores, targets)


def test_exclude_out_of_range_is_named() -> None:
    with pytest.raises(ValueError, match="item id 7"):
        rank_of_targets(np.zeros((1, 4)), np.array([0]), exclude=[np.array([7])])


# ---------------------------------------------------------------- ranking_metrics


def test_ndcg_known_values() -> None:
    assert ranking_metrics(np.array([0]), ks=(10,))["NDCG@10"] == 1.0
    assert ranking_metrics(np.array([1]), ks=(10,))["NDCG@10"] == pytest.approx(1 / math.log2(3))
    assert ranking_metrics(np.array([9]), ks=(10,))["NDCG@10"] == pytest.approx(1 / math.log2(11))
    assert ranking_metrics(np.array([10]), ks=(10,))["NDCG@10"] == 0.0


def test_ranking_metrics_by_hand() -> None:
    m = ranking_metrics(np.array([0, 1, 10, 25]), ks=(5, 10, 20))
    assert m["n"] == 4
    assert m["HR@5"] == 0.5
    assert m["HR@10"] == 0.5  # rank 10 is the 11th item: outside the top 10
    assert m["HR@20"] == 0.75
    assert m["NDCG@5"] == pytest.approx((1 + 1 / math.log2(3)) / 4)
    assert m["NDCG@20"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(12)) / 4)
    assert m["MRR"] == pytest.approx((1 + 1 / 2 + 1 / 11 + 1 / 26) / 4)
    assert set(m) == {"HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20", "MRR", "n"}


def test_ranking_metrics_of_nothing_is_nan() -> None:
    m = ranking_metrics(np.array([], dtype=np.int64), ks=(10,))
    assert m["n"] == 0 and math.isnan(m["HR@10"]) and math.isnan(m["MRR"])


def test_ranking_metrics_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="ranks must be >= 0"):
        ranking_metrics(np.array([-1]))
    with pytest.raises(ValueError, match="positive"):
        ranking_metrics(np.array([0]), ks=(0,))


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    shape=st.tuples(st.integers(1, 8), st.integers(2, 12)),
    ks=st.lists(st.integers(1, 15), min_size=1, max_size=4, unique=True),
)
def test_property_ranks_and_metrics(data, shape, ks) -> None:
    scores = data.draw(
        hnp.arrays(
            np.float32, shape, elements=st.sampled_from([0.0, 0.25, 0.5, 1.0, -np.inf, np.nan])
        )
    )
    n_rows, n_items = shape
    targets = np.array(
        data.draw(st.lists(st.integers(0, n_items - 1), min_size=n_rows, max_size=n_rows))
    )
    exclude = [
        np.array(data.draw(st.lists(st.integers(0, n_items - 1), max_size=n_items)), dtype=np.int64)
        for _ in range(n_rows)
    ]
    ranks = rank_of_targets(scores, targets, exclude=exclude)
    for i in range(n_rows):
        masked = set(exclude[i].tolist()) - {int(targets[i])}
        assert ranks[i] == brute_force_rank(scores[i], int(targets[i]), masked)
        assert 0 <= ranks[i] <= n_items - 1 - len(masked)

    m = ranking_metrics(ranks, ks=ks)
    assert m["n"] == n_rows
    for key, value in m.items():
        if key != "n":
            assert 0.0 <= value <= 1.0, key
    ordered = sorted(ks)
    for small, large in zip(ordered, ordered[1:]):
        assert m[f"HR@{small}"] <= m[f"HR@{large}"]
        assert m[f"NDCG@{small}"] <= m[f"NDCG@{large}"]
    for k in ks:
        assert m[f"NDCG@{k}"] <= m[f"HR@{k}"] + 1e-12
    assert m["MRR"] >= float(np.mean(ranks == 0))  # every rank-0 example contributes 1


# ---------------------------------------------------------------- evaluate_scorer


def test_evaluate_scorer_both_protocols_by_hand() -> None:
    n_items = 5
    histories = [np.array([1, 2]), np.array([3]), np.array([4, 1]), np.array([], dtype=np.int64)]
    targets = np.array([3, 3, 2, 4])
    matrix = np.array(
        [
            [0.0, 0.9, 0.8, 0.5, 0.1],  # all: items 1,2 above 3 -> 2; new: 1,2 masked -> 0
            [0.0, 0.1, 0.2, 0.9, 0.3],  # target in history: all -> 0; dropped from new
            [0.0, 0.3, 0.1, 0.2, 0.9],  # all: 4,1,3 above 2 -> 3; new: 4,1 masked -> 1
            [0.0, 0.1, 0.2, 0.3, 0.4],  # empty history: rank 0 in both
        ]
    )
    scorer = RowsScorer(matrix)
    res = evaluate_scorer(scorer, histories, targets, n_items=n_items, ks=(1, 2), batch_size=3)
    assert scorer.batches == [3, 1]
    assert set(res) == {"all_items", "new_items"}
    all_ranks, new_ranks = np.array([2, 0, 3, 0]), np.array([0, 1, 0])
    assert res["all_items"] == pytest.approx(ranking_metrics(all_ranks, ks=(1, 2)))
    expected_new = ranking_metrics(new_ranks, ks=(1, 2)) | {"n_dropped": 1}
    assert res["new_items"] == pytest.approx(expected_new)
    assert res["new_items"]["n"] == 3 and res["new_items"]["n_dropped"] == 1
    assert res["all_items"]["HR@1"] == 0.5


def test_evaluate_scorer_pad_id_not_ranked() -> None:
    matrix = np.array([[5.0, 0.2, 0.1], [5.0, 0.1, 0.2]])
    histories = [np.array([1]), np.array([1])]
    targets = np.array([2, 2])
    res = evaluate_scorer(RowsScorer(matrix), histories, targets, n_items=3, ks=(1,), pad_id=0)
    assert res["all_items"]["HR@1"] == 0.5
    assert res["new_items"]["HR@1"] == 1.0  # item 1 masked, pad never counts
    res = evaluate_scorer(RowsScorer(matrix), histories, np.array([2, 2]), n_items=3, ks=(1,))
    assert res["all_items"]["HR@1"] == 0.0


def test_evaluate_scorer_is_independent_of_batch_size() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items = 37, 11
    matrix = rng.integers(0, 4, size=(n_users, n_items)).astype(np.float32)  # many ties
    histories = [rng.integers(0, n_items, size=rng.integers(0, 6)) for _ in range(n_users)]
    targets = rng.integers(0, n_items, size=n_users)
    results = [
        evaluate_scorer(RowsScorer(matrix), histories, targets, n_items=n_items, batch_size=b)
        for b in (1, 5, 512)
    ]
    assert results[0] == results[1] == results[2]
    n_in_history = sum(int(t in h) for h, t in zip(histories, targets))
    assert results[0]["new_items"]["n_dropped"] == n_in_history
    assert results[0]["new_items"]["n"] == n_users - n_in_history


def test_evaluate_scorer_rejects_bad_input() -> None:
    scorer = RowsScorer(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="returned shape"):
        evaluate_scorer(scorer, [np.array([1]), np.array([2])], np.array([0, 1]), n_items=5)
    with pytest.raises(ValueError, match="one item per history"):
        evaluate_scorer(scorer, [np.array([1])], np.array([0, 1]), n_items=4)
    with pytest.raises(ValueError, match=r"history \(user 1\) holds item id 9"):
        evaluate_scorer(scorer, [np.array([1]), np.array([9])], np.array([0, 1]), n_items=4)
    with pytest.raises(ValueError, match="targets holds item id 4"):
        evaluate_scorer(scorer, [np.array([1]), np.array([2])], np.array([0, 4]), n_items=4)


def test_evaluate_scorer_at_catalogue_scale() -> None:
    """6k users x 5k items through the batched path (how long it takes is benchmarks' business)."""
    n_users, n_items = 6000, 5000
    rng = np.random.default_rng(1)

    class RandomScorer:
        def score(self, histories: list[np.ndarray]) -> np.ndarray:
            return rng.random((len(histories), n_items), dtype=np.float32)

    histories = [rng.integers(1, n_items, size=rng.integers(1, 200)) for _ in range(n_users)]
    targets = rng.integers(1, n_items, size=n_users)
    res = evaluate_scorer(RandomScorer(), histories, targets, n_items=n_items, pad_id=0)
    # A random scorer's HR@10 is about 10 / n_items.
    assert res["all_items"]["HR@10"] < 0.01
    assert res["all_items"]["n"] == n_users


def test_scorer_protocol_is_structural() -> None:
    assert isinstance(RowsScorer(np.zeros((1, 2))), Scorer)
    assert not isinstance(object(), Scorer)


# ---------------------------------------------------------------- reports


def _results() -> dict[str, dict]:
    good = {
        "all_items": ranking_metrics(np.array([0, 1, 2])),
        "new_items": ranking_metrics(np.array([0, 30])) | {"n_dropped": 1},
    }
    empty_new = ranking_metrics(np.array([], dtype=np.int64))
    bad = {
        "all_items": ranking_metrics(np.array([50, 60, 70])),
        "new_items": empty_new | {"n_dropped": 1},
    }
    return {"transformer": good, "most_popular": bad}


def _render(table: Table) -> str:
    console = Console(file=io.StringIO(), width=120, record=True)
    console.print(table)
    return console.export_text()


def test_format_report_table() -> None:
    table = format_report(_results())
    assert isinstance(table, Table)
    assert table.row_count == 2
    headers = [str(c.header) for c in table.columns]
    assert headers == [
        "model",
        "all\nHR@10",
        "all\nNDCG@10",
        "all\nMRR",
        "new\nHR@10",
        "new\nNDCG@10",
        "new\nMRR",
    ]
    text = _render(table)
    assert "transformer" in text and "most_popular" in text
    assert "1.0000" in text  # transformer's all-items HR@10
    assert "-" in text.split("most_popular")[1].splitlines()[0]  # NaN (no examples) as '-'
    assert "1 with target in history dropped" in text


def test_report_json_is_plain_json() -> None:
    results = _results()
    results["transformer"]["all_items"]["n"] = np.int64(3)
    results["transformer"]["all_items"]["MRR"] = np.float32(0.5)
    out = report_json(results)
    text = json.dumps(out, allow_nan=False)
    back = json.loads(text)
    assert back["transformer"]["all_items"]["n"] == 3
    assert back["transformer"]["all_items"]["MRR"] == 0.5
    assert back["most_popular"]["new_items"]["HR@10"] is None
    assert back["most_popular"]["new_items"]["n_dropped"] == 1
