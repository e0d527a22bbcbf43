"""ecomine.registry with an s3:// root on moto's real HTTP server (fixtures: s3_fixtures.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from ecomine import storage
from ecomine.registry import (
    ChecksumMismatch,
    ModelVersion,
    Registry,
    RegistryError,
    StageError,
    VersionExists,
    VersionNotFound,
)
from tests.registry_races import assert_nothing_lost, in_threads, model_dir, race_register_and_promote

pytestmark = pytest.mark.integration

SPEC = {"task": "risk", "model": {"kind": "pretrained", "name": "all-minilm-l6-v2"}}


def make_model_dir(folder: Path, *, seed: int = 0) -> Path:
    folder.mkdir(parents=True)
    weights = np.random.default_rng(seed).standard_normal((8, 4)).astype(np.float32)
    save_file({"classifier.weight": weights}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"threshold": 0.5, "seed": seed}))
    (folder / "tokenizer").mkdir()
    (folder / "tokenizer" / "vocab.txt").write_text("[PAD]\nrefund\n")
    return folder


def test_round_trip_on_s3(s3_prefix: str, tmp_path: Path) -> None:
    reg = Registry(s3_prefix + "/registry", cache_dir=tmp_path / "cache")
    mv = reg.register(
        "risk", make_model_dir(tmp_path / "src"), spec=SPEC, data_fingerprint="fp-1",
        metrics={"auc": 0.9}, tags=["nightly"],
    )
    assert mv.uri == f"{s3_prefix}/registry/risk/{mv.version}"
    keys = storage.list_prefix(mv.uri)
    rels = [k[len(mv.uri) + 1 :] for k in keys]
    assert rels == ["config.json", "manifest.json", "metrics.json", "model.safetensors", "tokenizer/vocab.txt"]
    manifest = storage.read_json(storage.join(mv.uri, "manifest.json"))
    assert manifest["files"]["model.safetensors"] == hashlib.sha256((tmp_path / "src" / "model.safetensors").read_bytes()).hexdigest()
    assert manifest["files"]["metrics.json"] == storage.sha256_file(storage.join(mv.uri, "metrics.json"))

    assert [v.version for v in reg.list()] == [mv.version]
    assert reg.get("risk", "latest") == mv
    reg.promote("risk", mv.version, "production")
    assert reg.get("risk", "production").stages == ["production"]

    folder = reg.fetch("risk", "production")
    assert folder.is_relative_to(tmp_path / "cache")
    for rel in ["model.safetensors", "config.json", "tokenizer/vocab.txt"]:
        assert (folder / rel).read_bytes() == (tmp_path / "src" / rel).read_bytes()
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert reg.fetch("risk", mv.version) == folder  # served from the cache, re-verified
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    assert sorted(p.name for p in folder.parent.iterdir()) == [mv.version]  # no temp folders left


def test_tampered_object_on_s3_is_refused(s3_prefix: str, tmp_path: Path) -> None:
    reg = Registry(s3_prefix + "/registry")
    mv = reg.register("risk", make_model_dir(tmp_path / "src"), spec=SPEC, data_fingerprint="fp", metrics={})
    weights_uri = storage.join(mv.uri, "model.safetensors")
    data = bytearray(storage.read_bytes(weights_uri))
    data[-1] ^= 0xFF
    tampered = storage.write_bytes(weights_uri, bytes(data))

    with pytest.raises(ChecksumMismatch) as info:
        reg.fetch("risk", mv.version, cache_dir=tmp_path / "cache")
    assert info.value.file == "model.safetensors"
    assert info.value.expected == mv.files["model.safetensors"] and info.value.actual == tampered
    assert tampered in str(info.value) and mv.files["model.safetensors"] in str(info.value)
    # the refused download was not kept in the cache
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []


def test_tampered_cached_copy_is_refused(s3_prefix: str, tmp_path: Path) -> None:
    reg = Registry(s3_prefix + "/registry", cache_dir=tmp_path / "cache")
    mv = reg.register("risk", make_model_dir(tmp_path / "src"), spec=SPEC, data_fingerprint="fp", metrics={})
    folder = reg.fetch("risk", mv.version)
    (folder / "config.json").write_text('{"threshold": 0.0}')
    with pytest.raises(ChecksumMismatch, match=r"config.json in the cached copy .* has sha256"):
        reg.fetch("risk", mv.version)


def _crash_before_the_manifest(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registration fails at its commit: creating the manifest (written only if absent) raises."""
    real = storage.create_json

    def fail_on_manifest(uri: object, obj: object, **kw: object) -> str:
        if str(uri).endswith("manifest.json"):
            raise storage.StorageError(str(uri), "simulated crash before the commit")
        return real(uri, obj, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(storage, "create_json", fail_on_manifest)


def test_failed_registration_on_s3_leaves_nothing(
    s3_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = Registry(s3_prefix + "/registry")
    _crash_before_the_manifest(monkeypatch)
    with pytest.raises(storage.StorageError, match="simulated crash"):
        reg.register("risk", make_model_dir(tmp_path / "src"), spec=SPEC, data_fingerprint="fp", metrics={}, version="v1")
    monkeypatch.undo()
    assert reg.list() == []
    assert storage.list_prefix(s3_prefix) == []  # the uploaded files were cleaned up
    with pytest.raises(VersionNotFound):
        reg.get("risk", "v1")


def test_promote_rollback_delete_on_s3(s3_prefix: str, tmp_path: Path) -> None:
    reg = Registry(s3_prefix + "/registry")
    v1, v2 = (
        reg.register("risk", make_model_dir(tmp_path / f"src{i}", seed=i), spec=SPEC, data_fingerprint="fp", metrics={}).version
        for i in range(2)
    )
    reg.promote("risk", v1, "production")
    reg.promote("risk", v2, "production")
    assert reg.rollback("risk", "production").version == v1
    with pytest.raises(StageError, match="points at it"):
        reg.delete("risk", v1)
    reg.delete("risk", v2)
    assert [v.version for v in reg.list("risk")] == [v1]
    assert storage.list_prefix(f"{s3_prefix}/registry/risk/{v2}") == []


def test_concurrent_registrations_and_promotions_on_s3_lose_nothing(s3_prefix: str, tmp_path: Path) -> None:
    root = s3_prefix + "/registry"
    versions, _seconds = race_register_and_promote(root, tmp_path, writers=6, processes=False)
    assert_nothing_lost(Registry(root, cache_dir=tmp_path / "cache"), versions)
    assert storage.list_prefix(f"{root}/recommend/.claims") == []  # every claim released


def test_one_version_registered_concurrently_on_s3_commits_once(s3_prefix: str, tmp_path: Path) -> None:
    reg = Registry(s3_prefix + "/registry", cache_dir=tmp_path / "cache")
    sources = [model_dir(tmp_path / f"src{i}", seed=i) for i in range(4)]
    outcomes = in_threads(
        lambda src: reg.register("risk", src, spec=SPEC, data_fingerprint="fp", metrics={}, version="same"), sources
    )
    winners = [o for o in outcomes if isinstance(o, ModelVersion)]
    assert len(winners) == 1 and all(isinstance(o, VersionExists) for o in outcomes if o is not winners[0]), outcomes
    reg.fetch("risk", "same")  # the winner's files, not a mix: every checksum verifies
    assert storage.list_prefix(s3_prefix + "/registry/risk/.claims") == []


def test_a_failed_clean_up_is_reported_not_swallowed(s3_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reg = Registry(s3_prefix + "/registry")
    def broken_delete_prefix(uri: object, **kw: object) -> int:
        raise storage.StorageAccessDenied(str(uri), "access denied (simulated)")

    _crash_before_the_manifest(monkeypatch)
    monkeypatch.setattr(storage, "delete_prefix", broken_delete_prefix)
    with pytest.raises(storage.StorageError, match="simulated crash") as info:
        reg.register("risk", make_model_dir(tmp_path / "src"), spec=SPEC, data_fingerprint="fp", metrics={}, version="v1")
    monkeypatch.undo()
    notes = " ".join(getattr(info.value, "__notes__", []))
    assert f"could not remove the partial upload {s3_prefix}/registry/risk/v1/" in notes and "simulated" in notes
    assert storage.list_prefix(f"{s3_prefix}/registry/risk/.claims") == []  # the claim still went
    with pytest.raises(RegistryError, match="holds files but no manifest"):  # what the note warned of
        reg.register("risk", make_model_dir(tmp_path / "src2"), spec=SPEC, data_fingerprint="fp", metrics={}, version="v1")
