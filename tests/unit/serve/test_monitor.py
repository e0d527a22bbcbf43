"""ecomine.serve.monitor: an arm's window against its version's profile (single, ensemble, no profile)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ecomine.data.drift import PROFILE_FILE, build_profile, recommend_observation
from ecomine.serve.monitor import ArmMonitor
from ecomine.predict.state import Member, ModelState

N_ITEMS = 50


def _folder(root: Path, version: str, with_profile: bool) -> Path:
    folder = root / version
    folder.mkdir()
    if with_profile:
        rng = np.random.default_rng(0)
        ranks = np.arange(N_ITEMS + 1)
        obs = [recommend_observation(len(h), h, ranks, rng.dirichlet(np.ones(N_ITEMS)) * 3)
               for h in (rng.integers(1, N_ITEMS + 1, int(rng.integers(2, 12))) for _ in range(800))]
        values = {k: np.concatenate([np.atleast_1d(o[k]) for o in obs]) for k in obs[0]}
        (folder / PROFILE_FILE).write_text(build_profile("recommend", values, lookups={"item_rank": ranks.tolist()}).dumps())
    return folder


def _state(root: Path, versions: dict[str, bool], weights: list[float]) -> ModelState:
    members = [Member(v, v, w, None, [], None, {}, _folder(root, v, p)) for (v, p), w in zip(versions.items(), weights)]
    return ModelState("recommend", members, weights, "label", datetime.now(timezone.utc), {})


def _stream(monitor: ArmMonitor, rng: np.random.Generator, n: int, lengths: tuple[int, int]) -> None:
    for _ in range(n):
        ids = rng.integers(1, N_ITEMS + 1, int(rng.integers(*lengths)))
        monitor.recommend(len(ids), ids, rng.dirichlet(np.ones(N_ITEMS)) * 3)


def test_a_like_stream_stays_ok_and_longer_histories_drift(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    calm = ArmMonitor(_state(tmp_path, {"v1": True}, [1.0]))
    _stream(calm, rng, 400, (2, 12))
    report = calm.report()
    assert report["status"] == "ok" and report["reference_version"] == "v1" and report["observations"] == 400
    moved = ArmMonitor(_state(tmp_path, {"v1b": True}, [1.0]), size=256)
    _stream(moved, rng, 400, (20, 40))
    report = moved.report()
    assert report["drifted"] == ["history_length"]
    assert len(moved.window_json()["window"]["history_length"]["values"]) == 256  # bounded


def test_a_version_without_profile_serves_and_says_so(tmp_path: Path) -> None:
    monitor = ArmMonitor(_state(tmp_path, {"old": False}, [1.0]))
    _stream(monitor, np.random.default_rng(2), 5, (2, 5))  # observing works without a profile
    report = monitor.report()
    assert report["status"] == "no_profile" and "recommend/old has no profile.json" in report["detail"]
    assert monitor.window_json()["has_profile"] is False


def test_an_ensemble_uses_its_heaviest_member_and_skips_predictions(tmp_path: Path) -> None:
    monitor = ArmMonitor(_state(tmp_path, {"a": False, "b": True}, [1.0, 2.0]))
    _stream(monitor, np.random.default_rng(3), 200, (2, 12))
    report = monitor.report()
    assert report["reference_version"] == "b"
    status = {f["feature"]: f["status"] for f in report["features"]}
    assert status["top1_probability"] == "skipped" and status["history_length"] == "ok"
