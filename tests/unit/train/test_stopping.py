"""Why a run stops (plateau, budget, cap), the schedule a constant-lr run follows, and time to quality."""

from __future__ import annotations

import pytest

from ecomine.specs import TrainSpec
from ecomine.train.loop import lr_lambda, stop_reason
from ecomine.train.runner import time_to_quality


def test_plateau_wins_over_budget_and_budget_projects_the_next_epoch() -> None:
    assert stop_reason(plateau=True, elapsed_s=10, epoch_s=5, budget_s=None) == "plateau"
    assert stop_reason(plateau=True, elapsed_s=100, epoch_s=5, budget_s=60) == "plateau"
    # 50 s spent, epochs of 15 s, a 60 s budget: the next epoch would end at 65 s, so none starts
    assert stop_reason(plateau=False, elapsed_s=50, epoch_s=15, budget_s=60) == "budget"
    assert stop_reason(plateau=False, elapsed_s=40, epoch_s=15, budget_s=60) is None
    assert stop_reason(plateau=False, elapsed_s=1e6, epoch_s=15, budget_s=None) is None


def test_constant_schedule_warms_up_then_holds() -> None:
    f = lr_lambda("constant", warmup=10, total=10_000)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == f(5_000) == f(9_999) == 1.0
    cosine = lr_lambda("cosine", warmup=0, total=100)
    assert cosine(0) == pytest.approx(1.0) and cosine(100) == pytest.approx(0.0)


def test_the_shipped_recommend_defaults_train_to_a_plateau_not_to_an_epoch() -> None:
    from pathlib import Path

    from ecomine.specs import load_spec

    spec = load_spec(Path(__file__).resolve().parents[3] / "train_configs" / "recommend.yaml", TrainSpec)
    assert spec.optim.schedule == "constant" and spec.optim.early_stopping is not None
    assert spec.optim.max_minutes is not None and spec.optim.warmup_epochs is not None
    assert spec.optim.epochs >= 100  # a cap far past where the plateau stops a run


def test_time_to_quality_tracks_the_best_so_far() -> None:
    history = [
        {"epoch": 1, "elapsed_s": 30.0, "val_ndcg@10": 0.01},
        {"epoch": 2, "elapsed_s": 60.0, "val_ndcg@10": 0.03},
        {"epoch": 3, "elapsed_s": 90.0, "val_ndcg@10": 0.02},
        {"epoch": 4, "val_ndcg@10": 0.5},  # no clock (an older run's history): left out
    ]
    rows = time_to_quality(history, "ndcg@10")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert [r["minutes"] for r in rows] == [0.5, 1.0, 1.5]
    assert [r["best"] for r in rows] == [0.01, 0.03, 0.03]
    lower = time_to_quality([{"epoch": 1, "elapsed_s": 1, "val_pinball": 0.3},
                             {"epoch": 2, "elapsed_s": 2, "val_pinball": 0.4}], "pinball")
    assert [r["best"] for r in lower] == [0.3, 0.3]  # pinball: lower is better


def test_plateau_schedule_is_constant_times_the_scale_the_loop_lowers() -> None:
    scale = [1.0]
    f = lr_lambda("plateau", warmup=0, total=100, scale=scale)
    assert f(5) == 1.0
    scale[0] = 0.25  # two plateaus at factor 0.5
    assert f(5) == f(99) == 0.25
