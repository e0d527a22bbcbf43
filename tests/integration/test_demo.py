"""`ecomine demo` end to end at its smallest size: the same code path as `make demo`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecomine.demo import DemoSize, run_demo

pytestmark = pytest.mark.integration


def test_demo_tiny_end_to_end(ray_session, tmp_path: Path) -> None:
    summary = run_demo(tmp_path / "demo", size=DemoSize.tiny())
    out = tmp_path / "demo"
    saved = json.loads((out / "summary.json").read_text())
    assert saved["seconds"] == summary["seconds"]
    assert [s["name"] for s in saved["stages"]] == ["synthetic log", "clean", "train", "tune", "registry"]
    for png in saved["plots"].values():
        assert Path(png).stat().st_size > 5_000
    report = saved["recommend_report"]
    assert {"ecomine (transformer)", "most_popular", "item_knn"} <= set(report)
    registry = next(s for s in saved["stages"] if s["name"] == "registry")
    assert len(registry["info"]["versions"]) >= 2  # the trained model + the campaign's top trials
