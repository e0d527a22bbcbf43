"""`ecomine ensemble build` on the synthetic log: members pinned, weights fitted, bad specs refused.

Members are trained in-process for a few dozen steps (the same writer and
registry the training driver uses); the builder itself needs no Ray.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from tests.train_helpers import train_briefly

SYNTH = {"kind": "synthetic", "users": 200, "items": 60, "days": 120, "seed": 1}


@pytest.fixture(scope="module")
def registry_root(tmp_path_factory) -> Path:
    import torch

    from ecomine.models.recommend import ItemVocab, RecommenderConfig, SequentialRecommender, save_recommender
    from ecomine.registry import Registry
    from ecomine.specs import TrainSpec
    from ecomine.train.events import load_training_events
    from ecomine.train.recommend_data import prepare_recommend_data

    root = tmp_path_factory.mktemp("ens") / "registry"
    registry = Registry(root)
    torch.set_num_threads(1)

    def member(version, data_ref, *, steps, seed, hidden=32, tags=()):
        spec = TrainSpec.model_validate({"data": data_ref, "run": {"registry": str(root)}})
        events, fp = load_training_events(spec.data)
        data = prepare_recommend_data(spec, events, fp)
        torch.manual_seed(seed)
        model = SequentialRecommender(RecommenderConfig(n_items=data.n_items, hidden=hidden, layers=1, heads=2, max_len=50))
        if steps:
            train_briefly(model, data.train_sequences, steps, seed)
        model.eval()
        with tempfile.TemporaryDirectory() as tmp:
            save_recommender(tmp, model, ItemVocab(items=data.vocab_items, texts=data.vocab_texts), popular=[1, 2, 3])
            registry.register("recommend", tmp, spec=spec.model_dump(mode="json"), data_fingerprint=fp,
                              metrics={"best_validation": float(seed), "validation_metric": "ndcg@10"},
                              version=version, tags=list(tags))

    member("rec-a", SYNTH, steps=60, seed=0, tags=["camp"])
    member("rec-b", SYNTH, steps=60, seed=1, hidden=48, tags=["camp"])
    member("rec-noise", SYNTH, steps=0, seed=2, tags=["camp"])
    member("rec-other", {**SYNTH, "seed": 7}, steps=5, seed=3)
    from ecomine.train.runner import run_baseline

    spec = TrainSpec.model_validate({"data": SYNTH, "run": {"registry": str(root), "name": "knn"}})
    run_baseline(spec, "item_knn")  # a non-neural version, tagged baseline:item_knn
    return root


def _spec_file(tmp_path: Path, root: Path, members: list[dict], **extra) -> Path:
    path = tmp_path / "ensemble.yaml"
    path.write_text(yaml.safe_dump({"kind": "ensemble", "task": "recommend", "registry": str(root),
                                    "members": members, **extra}))
    return path


def test_build_registers_a_version_pinning_its_members(registry_root, tmp_path):
    from ecomine.registry import content_digest, pinned_members, read_ensemble
    from ecomine.ensemble.build import build_ensemble
    from ecomine.registry import Registry
    from ecomine.specs import EnsembleSpec, load_spec

    spec = load_spec(_spec_file(tmp_path, registry_root, [{"version": "rec-a"}, {"version": "rec-b"},
                                                          {"version": "rec-noise"}]), EnsembleSpec)
    outcome = build_ensemble(spec)
    registry = Registry(registry_root)
    mv = registry.get("recommend", outcome.version)
    assert "ensemble" in mv.tags and "ensemble.json" in mv.files
    ens = read_ensemble(registry.fetch("recommend", mv.version))
    assert [m.version for m in ens.members] == ["rec-a", "rec-b", "rec-noise"]
    for m in ens.members:
        assert m.digest == content_digest(registry.get("recommend", m.version))
    weights = np.array([m.weight for m in ens.members])
    assert abs(weights.sum() - 1) < 1e-9
    assert weights[2] < 0.1 < min(weights[0], weights[1])  # the untrained member is all but dropped
    assert [v.version for v in pinned_members(registry, "recommend", mv.version, ens)] == ["rec-a", "rec-b", "rec-noise"]
    names = list(outcome.results)
    assert names[0] == "ensemble" and any(n.startswith("member rec-a") for n in names)
    assert {"item_knn", "most_popular"} <= set(names)  # baselines in the same report
    assert mv.metrics["test"]["all_items"]["NDCG@10"] > 0  # the headline `registry list` prints
    assert set(mv.metrics["report"]) == set(outcome.results)


def test_campaign_members_take_the_best_by_validation(registry_root, tmp_path):
    from ecomine.ensemble.build import resolve_members
    from ecomine.registry import Registry
    from ecomine.specs import EnsembleSpec

    spec = EnsembleSpec.model_validate({"task": "recommend", "members": [{"campaign": "camp", "top": 2}]})
    got = [mv.version for mv in resolve_members(Registry(registry_root), spec)]
    assert got == ["rec-noise", "rec-b"]  # best_validation 2.0 and 1.0 (max is better for ndcg@10)


@pytest.mark.parametrize(
    ("members", "needle"),
    [
        ([{"version": "rec-a"}, {"version": "nope-1"}], "members[1].version"),
        ([{"version": "rec-a"}, {"version": "rec-other"}], "members[1]: recommend/rec-other was trained on other data"),
        ([{"version": "rec-a"}], "at least 2"),
        ([{"version": "rec-a"}, {"tag": "no-such-tag"}], "members[1].tag"),
        ([{"version": "rec-a", "tag": "camp"}, {"version": "rec-b"}], "members.0"),
    ],
)
def test_bad_specs_are_one_line_exit_2_and_register_nothing(registry_root, tmp_path, members, needle):
    from ecomine.cli.main import app
    from ecomine.registry import Registry

    before = {mv.version for mv in Registry(registry_root).list("recommend")}
    result = CliRunner().invoke(app, ["ensemble", "build", str(_spec_file(tmp_path, registry_root, members))])
    assert result.exit_code != 0
    assert needle in " ".join(str(result.exception).split()), result.exception
    assert {mv.version for mv in Registry(registry_root).list("recommend")} == before


def test_cli_main_prints_one_line(registry_root, tmp_path, capsys, monkeypatch):
    import sys

    from ecomine.cli.main import main

    path = _spec_file(tmp_path, registry_root, [{"version": "rec-a"}, {"version": "nope-1"}])
    monkeypatch.setattr(sys, "argv", ["ecomine", "ensemble", "build", str(path)])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "members[1].version" in err


def test_a_member_rewritten_after_the_build_is_refused(registry_root, tmp_path):
    """Changing a member's file and re-sealing its manifest passes the registry's own check, not the pin."""
    import hashlib

    from ecomine.registry import EnsembleManifest, PinnedMember, content_digest, pinned_members
    from ecomine.registry import ChecksumMismatch, Registry

    registry = Registry(registry_root)
    pins = [PinnedMember(version=v, digest=content_digest(registry.get("recommend", v)), weight=0.5)
            for v in ("rec-a", "rec-b")]
    ens = EnsembleManifest(task="recommend", method="likelihood", members=pins)
    folder = registry_root / "recommend" / "rec-b"
    items = folder / "popular.json"
    items.write_text(json.dumps({"items": [3, 2, 1]}))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["popular.json"] = hashlib.sha256(items.read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    registry.fetch("recommend", "rec-b")  # re-sealed: the registry alone cannot tell
    with pytest.raises(ChecksumMismatch, match="member 1 .*rec-b.* changed"):
        pinned_members(registry, "recommend", "ens-x", ens)


def test_serving_runtime_expands_an_ensemble_version_into_its_pinned_members(registry_root, tmp_path):
    """The served answer of an ensemble version is the builder's mixture: same members, weights, temperatures."""
    from ecomine.ensemble.build import RecommendMixture, build_ensemble
    from ecomine.models.recommend import load_recommender
    from ecomine.registry import Registry
    from ecomine.predict.runtime import load_state
    from ecomine.specs import EnsembleSpec

    registry = Registry(registry_root)
    spec = EnsembleSpec.model_validate({"task": "recommend", "registry": str(registry_root),
                                        "members": [{"version": "rec-a"}, {"version": "rec-b"}]})
    version = build_ensemble(spec).version
    state = load_state(registry, "recommend", [(version, 1.0)])
    from ecomine.registry import read_ensemble

    pins = {m.version: m for m in read_ensemble(registry.fetch("recommend", version)).members}
    assert state.versions == ["rec-a", "rec-b"]
    assert state.weights == pytest.approx([pins["rec-a"].weight, pins["rec-b"].weight])
    assert [m.temperature for m in state.members] == [pins["rec-a"].temperature, pins["rec-b"].temperature]
    histories = [np.array([1, 2, 3]), np.array([5])]
    from ecomine.predict.recommend_task import run as _run_recommend

    served = np.stack(_run_recommend(state, histories))
    models = [load_recommender(registry.fetch("recommend", v))[0] for v in ("rec-a", "rec-b")]
    mixture = RecommendMixture(models, np.array([pins["rec-a"].weight, pins["rec-b"].weight]),
                               [pins["rec-a"].temperature, pins["rec-b"].temperature])
    np.testing.assert_allclose(served, np.exp(mixture.score(histories)), rtol=1e-6, atol=1e-12)
    # a tampered member: the whole ensemble version refuses to load
    folder = registry_root / "recommend" / "rec-a" / "popular.json"
    original = folder.read_bytes()
    folder.write_text('{"items": [9]}')
    try:
        from ecomine.registry import ChecksumMismatch

        with pytest.raises(ChecksumMismatch):
            load_state(registry, "recommend", [(version, 1.0)])
    finally:
        folder.write_bytes(original)


def test_a_non_neural_member_joins_an_ensemble_and_serves(registry_root):
    from ecomine.ensemble.build import build_ensemble
    from ecomine.registry import Registry
    from ecomine.predict.recommend_task import run as _run_recommend
    from ecomine.predict.runtime import load_state
    from ecomine.specs import EnsembleSpec

    registry = Registry(registry_root)
    knn = [mv for mv in registry.list("recommend") if "baseline:item_knn" in mv.tags]
    assert len(knn) == 1 and knn[0].metrics["best_validation"] > 0
    alone = load_state(registry, "recommend", [(knn[0].version, 1.0)])
    assert np.stack(_run_recommend(alone, [np.array([1, 2])])).shape == (1, 61)
    spec = EnsembleSpec.model_validate({"task": "recommend", "registry": str(registry_root),
                                        "members": [{"version": "rec-a"}, {"tag": "baseline:item_knn"}]})
    outcome = build_ensemble(spec)
    (knn_pin,) = [m for m in outcome.members if m["version"] == knn[0].version]
    assert knn_pin["temperature"] > 2  # kNN scores are far flatter than logits: the fit sharpens them
    state = load_state(registry, "recommend", [(outcome.version, 1.0)])
    assert state.versions == ["rec-a", knn[0].version]


def test_every_shipped_ensemble_spec_loads():
    from ecomine.specs import EnsembleSpec, load_spec

    found = sorted((Path(__file__).resolve().parents[3] / "ensembles").rglob("*.yaml"))
    assert {"recommend.yaml", "recommend_online_retail.yaml"} <= {p.name for p in found}
    for path in found:
        spec = load_spec(path, EnsembleSpec)
        assert spec.members and path.read_text().startswith("# EnsembleSpec")


def test_versus_best_member_picks_by_direction():
    from ecomine.ensemble.build import versus_best_member

    rows = {"ensemble": {"pinball": 0.9}, "member a (w 0.5)": {"pinball": 1.0}, "member b (w 0.5)": {"pinball": 1.2},
            "zero": {"pinball": 0.1}}
    (r,) = versus_best_member("demand", rows)
    assert r["best_member"] == "member a (w 0.5)" and abs(r["ratio"] - 0.9) < 1e-12  # baselines are not members


def test_evaluate_names_an_ensemble_version_in_one_line(registry_root):
    from ecomine.cli.main import app
    from ecomine.registry import Registry

    ens = next(mv for mv in Registry(registry_root).list("recommend") if "ensemble" in mv.tags)
    result = CliRunner().invoke(app, ["evaluate", ens.version, "--registry", str(registry_root)])
    assert result.exit_code != 0 and "is an ensemble version" in str(result.exception)


def test_prepared_data_is_reused_and_must_be_the_members_data(registry_root, tmp_path):
    """`build_ensemble(..., data=)` skips preparing again, fits the same weights, and refuses another data set."""
    from ecomine.registry import read_ensemble
    from ecomine.ensemble.build import build_ensemble
    from ecomine.registry import Registry
    from ecomine.specs import EnsembleSpec, SpecError, TrainSpec
    from ecomine.train.tasks import get_task

    task = get_task("recommend")
    spec = EnsembleSpec(task="recommend", registry=str(registry_root), members=[{"version": "rec-a"}, {"version": "rec-b"}])
    fresh = build_ensemble(spec)
    same = build_ensemble(spec, data=task.prepare(TrainSpec.model_validate({"data": SYNTH})))
    registry = Registry(registry_root)
    w = [[m.weight for m in read_ensemble(registry.fetch("recommend", o.version)).members] for o in (fresh, same)]
    assert np.allclose(w[0], w[1], atol=1e-9)
    assert fresh.results["ensemble"]["all_items"]["NDCG@10"] == same.results["ensemble"]["all_items"]["NDCG@10"]
    before = {v.version for v in registry.list("recommend")}
    other = task.prepare(TrainSpec.model_validate({"data": {**SYNTH, "seed": 7}}))
    with pytest.raises(SpecError, match=r"members\[0\]: recommend/rec-a was trained on other data"):
        build_ensemble(spec, data=other)
    assert {v.version for v in registry.list("recommend")} == before  # nothing registered
