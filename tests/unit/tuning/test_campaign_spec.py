"""Campaign specs: a bad search space fails before any trial, naming the dimension."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecomine.specs import SpecError
from ecomine.tuning.campaign import load_campaign

REPO = Path(__file__).resolve().parents[3]
BASE = """
kind: train
data: {kind: synthetic, users: 50, items: 20, days: 30}
"""


def _campaign(tmp_path: Path, space: str, extra: str = "") -> Path:
    (tmp_path / "base.yaml").write_text(BASE)
    p = tmp_path / "c.yaml"
    p.write_text(f"kind: tune\nname: c1\nbase: base.yaml\nspace:\n{space}\n{extra}")
    return p


@pytest.mark.parametrize(
    "space, expected",
    [
        ("  model.layers: choice [1, 2]", r"space\.model\.layers: unknown field"),
        ("  optim.lr: choice []", r"space\.optim\.lr.*choice is empty"),
        ("  optim.lr: loguniform 3e-3 1e-4", r"low \(0\.003\) must be < high"),
        ("  optim.lr: uniform 0.1 2", r"space\.optim\.lr: value 2\.0 is not valid.*less than 1"),
        ("  optim.lr: gaussian 1 2", r"unknown search kind 'gaussian'"),
    ],
)
def test_bad_space_is_refused(tmp_path: Path, space: str, expected: str) -> None:
    with pytest.raises(SpecError, match=expected):
        load_campaign(_campaign(tmp_path, space))


def test_unknown_metric(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"metric: 'pr_auc' is not a recommend validation metric"):
        load_campaign(_campaign(tmp_path, "  optim.lr: loguniform 1e-4 1e-2", "metric: pr_auc\n"))


def test_every_shipped_campaign_loads() -> None:
    found = sorted((REPO / "tune").rglob("*.yaml"))
    assert {"recommend.yaml", "demand.yaml", "risk.yaml"} <= {p.name for p in found}
    for path in found:
        c = load_campaign(path)
        assert c.spec.space
        if path.stem in ("recommend", "demand", "risk"):
            assert c.base.task == path.stem


def test_ensemble_block_needs_enough_exported_trials(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"ensemble: needs export_top_k >= 2 and top_k <= export_top_k"):
        load_campaign(_campaign(tmp_path, "  optim.lr: loguniform 1e-4 1e-2", "export_top_k: 2\nensemble: {top_k: 3}\n"))


def test_exponent_floats_in_a_choice_are_floats_not_yaml11_strings() -> None:
    from ecomine.specs.tune import SearchDim

    assert SearchDim.model_validate("choice [1e-2, 1e-7, adamw, 3]").choice == [0.01, 1e-7, "adamw", 3]
