"""ecomine.train.profiles: a registered version carries profile.json, sealed by the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SYNTH = {"kind": "synthetic", "users": 120, "items": 40, "days": 90, "seed": 3}


def test_a_registered_baseline_carries_its_reference_profile(tmp_path: Path) -> None:
    from ecomine.data.drift import FEATURES, PROFILE_FILE, ReferenceProfile
    from ecomine.registry import Registry
    from ecomine.specs import TrainSpec
    from ecomine.train.runner import run_baseline

    spec = TrainSpec.model_validate({"data": SYNTH, "run": {"registry": str(tmp_path), "name": "pop"}})
    outcome = run_baseline(spec, "most_popular")  # through register_trained, no Ray
    registry = Registry(tmp_path)
    mv = registry.get("recommend", outcome.version)
    assert PROFILE_FILE in mv.files  # sealed by sha256 like the weights
    profile = ReferenceProfile.loads((registry.fetch("recommend", outcome.version) / PROFILE_FILE).read_text())
    assert set(profile.features) == set(FEATURES["recommend"])
    items = json.loads((Path(mv.uri) / "items.json").read_text())["items"]
    ranks = np.asarray(profile.lookups["item_rank"])
    assert len(ranks) == len(items) + 1 and sorted(ranks[1:].tolist()) == list(range(1, len(items) + 1))
    f = profile.features
    assert f["history_length"].n > 50 and f["history_length"].mean >= 1
    assert f["unknown_item_share"].edges == [0.0]  # every held-out item is known
    assert 0 < f["top1_probability"].mean <= 1
    assert f["item_popularity_rank"].n > f["history_length"].n  # one value per history item
