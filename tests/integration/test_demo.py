"""`ecomine demo` end to end at its smallest size: the same code path as `make demo`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecomine.demo.run import DemoSize, run_demo

pytestmark = pytest.mark.integration


def test_demo_tiny_end_to_end(ray_session, tmp_path: Path) -> None:
    summary = run_demo(tmp_path / "demo", size=DemoSize.tiny())
    out = tmp_path / "demo"
    saved = json.loads((out / "summary.json").read_text())
    assert saved["seconds"] == summary["seconds"]
    assert [s["name"] for s in saved["stages"]] == [
        "synthetic log", "clean", "train recommend", "train demand", "train risk", "tune", "ensemble", "registry",
        "serve",
    ]
    assert set(saved["plots"]) == {"training_curve", "demand_forecast", "risk_calibration", "campaign", "risk_drivers"}
    for png in saved["plots"].values():
        assert Path(png).stat().st_size > 5_000
    reports = saved["reports"]
    assert {"ecomine (transformer)", "most_popular", "item_knn"} <= set(reports["recommend"])
    assert len(reports["demand"]) >= 4 and len(reports["risk"]) >= 3  # the model beside its baselines
    for task, rows in saved["vs_baselines"].items():
        assert rows, task
    ensemble = next(s for s in saved["stages"] if s["name"] == "ensemble")["info"]
    assert len(ensemble["members"]) >= 3 and abs(sum(m["weight"] for m in ensemble["members"]) - 1) < 1e-6
    assert saved["vs_baselines"]["recommend (served ensemble)"]["all_items"]["ratio"] is not None
    registry = next(s for s in saved["stages"] if s["name"] == "registry")["info"]["versions"]
    assert len(registry["recommend"]) >= 2  # the trained model + the campaign's top trials
    assert len(registry["demand"]) == 3 and len(registry["risk"]) == 1  # demand: PatchTST, LightGBM, their mixture
    # every route answered through the client SDK, by the models the demo trained
    served = next(s for s in saved["stages"] if s["name"] == "serve")["info"]
    assert served["health"]["status"] == "ok" and served["models"]
    assert len(served["recommend"]["items"]) == 5 and not served["recommend"]["fallback"]
    # the production recommend version is the ensemble: served through its pinned members
    assert sorted(served["recommend"]["versions"]) == sorted(m["version"] for m in ensemble["members"])
    assert served["recommend_unknown_user"]["fallback"] is True
    live = served["live_events"]  # one POST /v1/events turns a stranger's popular items into a personal ranking
    assert live["before"]["fallback"] and live["accepted"] == 1
    assert not live["after"]["fallback"] and live["after"]["history_source"] == "live"
    assert live["after"]["items"] != live["before"]["items"]
    demand = served["demand"]
    # the promoted mixture serves as its two members (the registry also lists the ensemble version itself)
    assert len(demand["versions"]) == 2 and set(demand["versions"]) < set(registry["demand"]) and demand["horizon"] == 7
    flags = {f["item_id"]: f["fallback"] for f in demand["forecasts"]}
    assert flags.pop("NO-SUCH-ITEM") is True and not any(flags.values())  # the unknown item is flagged, known ones not
    for f in demand["forecasts"]:
        p10, p50, p90 = f["values"]
        assert all(0 <= a <= b <= c for a, b, c in zip(p10, p50, p90))
    risk = served["risk"]
    assert risk["versions"] == registry["risk"] and len(risk["results"]) == 2
    assert all(0.0 <= r["probability"] <= 1.0 for r in risk["results"])
    assert served["insights"]["items"] and served["insights"]["unavailable"] == []
    # one explained call per task, by the real models the demo trained (explain: true through the SDK)
    why = served["explained"]
    assert why["recommend"]["explanation"].startswith("occlusion") and why["recommend"]["items"][0]["because"] is not None
    assert all(b["item_id"] in served_history(saved) for it in why["recommend"]["items"] for b in it["because"] or [])
    drivers = why["demand"]["forecasts"][0]["drivers"]
    assert {d["input"] for d in drivers} == {"recent_level", "seasonal_values", "calendar", "price", "item"}
    line = why["risk"]["results"][0]["lines"][0]
    assert line["features"] and line["tokens"] and 0.0 <= line["probability"] <= 1.0
    assert abs(line["residual"]) <= 0.1 * abs(line["probability"] - line["baseline_probability"]) + 1e-3  # complete
    assert Path(why["risk_drivers_png"]).stat().st_size > 5_000


def served_history(saved: dict) -> set[str]:
    """The history the demo's explained recommend call sent (its sample customer's last ten items)."""
    serve = next(s for s in saved["stages"] if s["name"] == "serve")["info"]
    return set(serve["sample_history"])
