"""ecomine.registry on a local root (the S3 round trip is in tests/integration/test_registry_s3.py)."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from ecomine import registry as registry_module
from ecomine.registry import _stages as stages_module
from ecomine import storage
from ecomine.registry import (
    ChecksumMismatch,
    InvalidName,
    Registry,
    RegistryError,
    StageError,
    VersionExists,
    VersionNotFound,
    new_version_id,
)
from tests.package_exports import module_exports
from tests.registry_races import assert_nothing_lost, in_threads, race_register_and_promote

SPEC = {"task": "recommend", "model": {"kind": "from_config", "hidden_size": 32}, "train": {"epochs": 1}}


def make_model_dir(folder: Path, *, seed: int = 0) -> Path:
    """A staging folder shaped like what train writes: weights, config, vocab, a nested tokenizer file."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    save_file({"head.weight": rng.standard_normal((4, 3)).astype(np.float32)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"hidden_size": 32, "seed": seed}))
    (folder / "items.json").write_text(json.dumps(["i1", "i2", "i3"]))
    (folder / "tokenizer").mkdir(exist_ok=True)
    (folder / "tokenizer" / "vocab.txt").write_text("[PAD]\n[UNK]\nshoe\n")
    return folder


def register(reg: Registry, tmp_path: Path, *, seed: int = 0, **kwargs: object) -> registry_module.ModelVersion:
    src = make_model_dir(tmp_path / f"stage-{seed}-{os.urandom(3).hex()}", seed=seed)
    defaults: dict[str, object] = {"spec": SPEC, "data_fingerprint": f"sha256:{seed:064d}", "metrics": {"ndcg@10": 0.1 + seed}}
    defaults.update(kwargs)
    return reg.register("recommend", src, **defaults)  # type: ignore[arg-type]


def test_round_trip_register_list_get_fetch(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    mv = register(reg, tmp_path, tags=["baseline", "small"], notes="first")

    assert re.fullmatch(r"v\d{8}-\d{6}-[0-9a-f]{8}", mv.version)
    assert mv.uri == str(tmp_path / "reg" / "recommend" / mv.version)
    assert mv.created_at.tzinfo is not None and mv.created_at.utcoffset() == timedelta(0)
    assert mv.spec == SPEC and mv.metrics == {"ndcg@10": 0.1} and mv.tags == ["baseline", "small"]
    assert mv.libraries["python"] and mv.libraries["polars"] and "torch" in mv.libraries

    folder = tmp_path / "reg" / "recommend" / mv.version
    on_disk = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert on_disk == ["config.json", "items.json", "manifest.json", "metrics.json", "model.safetensors", "tokenizer/vocab.txt"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) == set(on_disk) - {"manifest.json"}
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((folder / rel).read_bytes()).hexdigest() == digest
    assert json.loads((folder / "metrics.json").read_text()) == {"ndcg@10": 0.1}
    assert manifest["task"] == "recommend" and manifest["version"] == mv.version
    assert manifest["data_fingerprint"] == "sha256:" + "0" * 64 and manifest["notes"] == "first"

    assert [v.version for v in reg.list()] == [mv.version]
    assert [v.version for v in reg.list("recommend")] == [mv.version]
    assert reg.list("demand") == []
    assert reg.tasks() == ["recommend"]
    assert reg.get("recommend", mv.version) == mv
    assert reg.get("recommend", "latest") == mv
    assert reg.show("recommend", mv.version)["version"] == mv.version

    reg.promote("recommend", mv.version, "staging")
    staged = reg.get("recommend", "staging")
    assert staged.version == mv.version and staged.stages == ["staging"]
    assert reg.list()[0].stages == ["staging"]

    fetched = reg.fetch("recommend", "staging")
    assert fetched == folder
    assert (fetched / "model.safetensors").read_bytes() == (tmp_path / "reg" / "recommend" / mv.version / "model.safetensors").read_bytes()


def test_file_uri_root_works(tmp_path: Path) -> None:
    reg = Registry("file://" + str(tmp_path / "reg"))
    mv = register(reg, tmp_path)
    assert reg.get("recommend", "latest").version == mv.version
    assert reg.fetch("recommend", mv.version) == tmp_path / "reg" / "recommend" / mv.version


def test_latest_is_the_newest_by_creation_time(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    first = register(reg, tmp_path, seed=0, version="zeta")
    second = register(reg, tmp_path, seed=1, version="alpha")  # newer, though it sorts first by name
    assert [v.version for v in reg.list("recommend")] == [first.version, second.version]
    assert reg.get("recommend", "latest").version == "alpha"


@pytest.mark.parametrize("tamper", ["modify", "remove", "add", "manifest"])
def test_tampered_version_is_refused(tmp_path: Path, tamper: str) -> None:
    reg = Registry(tmp_path / "reg")
    mv = register(reg, tmp_path)
    folder = tmp_path / "reg" / "recommend" / mv.version
    weights = folder / "model.safetensors"
    if tamper == "modify":
        data = bytearray(weights.read_bytes())
        data[-1] ^= 0xFF  # flip the bits of one weight byte
        weights.write_bytes(bytes(data))
    elif tamper == "remove":
        (folder / "items.json").unlink()
    elif tamper == "add":
        (folder / "evil.py").write_text("print('hi')")
    else:
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["files"]["model.safetensors"] = "0" * 64
        (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ChecksumMismatch) as info:
        reg.fetch("recommend", mv.version)
    err, message = info.value, str(info.value)
    assert f"recommend/{mv.version}" in message
    if tamper == "modify":
        assert err.file == "model.safetensors"
        assert err.expected == mv.files["model.safetensors"]
        assert err.actual == hashlib.sha256(weights.read_bytes()).hexdigest() != err.expected
        assert err.expected in message and err.actual in message
    elif tamper == "remove":
        assert err.file == "items.json" and err.actual is None and "missing" in message
    elif tamper == "add":
        assert err.file == "evil.py" and err.expected is None and "not in the manifest" in message
    else:  # the manifest now disagrees with the weights it seals
        assert err.file == "model.safetensors" and err.expected == "0" * 64


def test_promote_and_rollback(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    v1, v2, v3 = (register(reg, tmp_path, seed=i).version for i in range(3))

    with pytest.raises(VersionNotFound, match="stage 'production' of task 'recommend' holds no version"):
        reg.get("recommend", "production")
    with pytest.raises(StageError, match="holds no version"):
        reg.rollback("recommend", "production")

    assert reg.promote("recommend", v1, "production").previous == []
    with pytest.raises(StageError, match=f"no previous version to roll back to \\(it holds {v1}\\)"):
        reg.rollback("recommend", "production")
    reg.promote("recommend", v2, "production")
    again = reg.promote("recommend", v2, "production")  # already there: no new history entry
    assert again.previous == [v1]
    reg.promote("recommend", v3, "staging")
    pointer = reg.promote("recommend", "staging", "production")  # a stage as the ref
    assert (pointer.version, pointer.previous) == (v3, [v1, v2])

    raw = json.loads((tmp_path / "reg" / "recommend" / "stages" / "production.json").read_text())
    assert set(raw) == {"stage", "version", "previous", "updated_at"}
    assert raw["version"] == v3 and raw["previous"] == [v1, v2]
    assert {v.version: v.stages for v in reg.list("recommend")} == {v1: [], v2: [], v3: ["staging", "production"]}

    assert reg.rollback("recommend", "production").version == v2
    assert reg.get("recommend", "production").version == v2
    back = reg.rollback("recommend", "production")
    assert (back.version, back.previous) == (v1, [])
    with pytest.raises(StageError, match="no previous version"):
        reg.rollback("recommend", "production")
    assert reg.get("recommend", "staging").version == v3  # other stages untouched

    with pytest.raises(InvalidName, match="stage 'prod' is not one of staging, production"):
        reg.promote("recommend", v1, "prod")  # type: ignore[arg-type]
    with pytest.raises(VersionNotFound):
        reg.promote("recommend", "v-nope", "staging")


def test_delete_refuses_a_staged_version_and_rollback_refuses_a_deleted_one(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    v1, v2 = (register(reg, tmp_path, seed=i).version for i in range(2))
    reg.promote("recommend", v1, "production")
    with pytest.raises(StageError, match=f"refusing to delete recommend/{v1}: stage production points at it"):
        reg.delete("recommend", v1)
    reg.promote("recommend", v2, "production")
    reg.delete("recommend", v1)
    assert [v.version for v in reg.list("recommend")] == [v2]
    assert sorted(p.name for p in (tmp_path / "reg" / "recommend").iterdir()) == ["stages", v2]
    with pytest.raises(StageError, match=f"roll back to {v1}, which was deleted"):
        reg.rollback("recommend", "production")
    with pytest.raises(VersionNotFound):
        reg.delete("recommend", v1)


def _leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_failed_copy_midway_registers_nothing(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    src = make_model_dir(tmp_path / "src")
    (src / "zz_vocab.json").symlink_to(tmp_path / "gone.json")  # listed, but vanishes when copied (last)
    with pytest.raises(storage.StorageNotFound, match="zz_vocab.json"):
        reg.register("recommend", src, spec=SPEC, data_fingerprint="fp", metrics={}, version="broken")
    assert reg.list() == []
    assert [p for p in _leftovers(tmp_path / "reg") if p != "recommend"] == []
    # the name is free again once the source is fixed
    (src / "zz_vocab.json").unlink()
    assert reg.register("recommend", src, spec=SPEC, data_fingerprint="fp", metrics={}, version="broken").version == "broken"


def test_failure_at_commit_registers_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reg = Registry(tmp_path / "reg")
    real = storage.write_json

    def fail_on_manifest(uri: object, obj: object, **kw: object) -> str:
        if str(uri).endswith("manifest.json"):
            raise OSError("disk full")
        return real(uri, obj, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(storage, "write_json", fail_on_manifest)
    with pytest.raises(OSError, match="disk full"):
        register(reg, tmp_path)
    monkeypatch.undo()
    assert reg.list() == []
    assert _leftovers(tmp_path / "reg") == ["recommend"]


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"version": "Bad Name"}, InvalidName, r"version 'Bad Name' is not a valid name"),
        ({"version": "../escape"}, InvalidName, r"not a valid name"),
        ({"version": "production"}, InvalidName, r"reserved"),
        ({"version": "latest"}, InvalidName, r"reserved"),
        ({"parent": "no/slashes"}, InvalidName, r"parent version"),
        ({"spec": {"x": {1, 2}}}, RegistryError, r"spec is not JSON-serialisable"),
        ({"metrics": {"m": object()}}, RegistryError, r"metrics is not JSON-serialisable"),
        ({"data_fingerprint": ""}, RegistryError, r"data_fingerprint must be a non-empty string"),
        ({"tags": [" padded"]}, RegistryError, r"tags must be non-empty"),
    ],
)
def test_bad_arguments_register_nothing(tmp_path: Path, kwargs: dict[str, object], error: type[Exception], pattern: str) -> None:
    reg = Registry(tmp_path / "reg")
    with pytest.raises(error, match=pattern):
        register(reg, tmp_path, **kwargs)
    assert not (tmp_path / "reg").exists()


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        ("pytorch_model.bin", b"\x80\x04pickle", r"pytorch_model.bin looks like a pickle-format checkpoint"),
        ("head.pt", b"\x80\x04", r"pickle-format"),
        ("metrics.json", b"{}", r"metrics.json .* is written by the registry; pass metrics=\.\.\. instead"),
        ("manifest.json", b"{}", r"manifest.json .* is written by the registry"),
        ("extra.safetensors", b"garbage, not safetensors", r"file extra.safetensors: not a safetensors file"),
    ],
)
def test_unsafe_or_reserved_files_are_refused(tmp_path: Path, name: str, content: bytes, pattern: str) -> None:
    reg = Registry(tmp_path / "reg")
    src = make_model_dir(tmp_path / "src")
    (src / name).write_bytes(content)
    with pytest.raises(RegistryError, match=pattern):
        reg.register("recommend", src, spec=SPEC, data_fingerprint="fp", metrics={})
    assert reg.list() == [] and not (tmp_path / "reg").exists()


def test_missing_or_empty_files_dir(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    with pytest.raises(RegistryError, match="is not a folder"):
        reg.register("recommend", tmp_path / "nope", spec=SPEC, data_fingerprint="fp", metrics={})
    (tmp_path / "empty").mkdir()
    with pytest.raises(RegistryError, match="is empty"):
        reg.register("recommend", tmp_path / "empty", spec=SPEC, data_fingerprint="fp", metrics={})


def test_taken_version_and_leftover_folder(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    register(reg, tmp_path, version="v1")
    with pytest.raises(VersionExists, match="recommend/v1: version already registered"):
        register(reg, tmp_path, version="v1")
    (tmp_path / "reg" / "recommend" / "v2").mkdir()
    (tmp_path / "reg" / "recommend" / "v2" / "model.safetensors").write_bytes(b"half an upload")
    with pytest.raises(RegistryError, match="holds files but no manifest"):
        register(reg, tmp_path, version="v2")
    assert [v.version for v in reg.list()] == ["v1"]  # the uncommitted folder is not a version


def test_unknown_version_lists_the_nearest(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    with pytest.raises(VersionNotFound, match="task 'recommend' has no versions under"):
        reg.get("recommend", "latest")
    for name in ["v1.0", "v1.1", "v2.0", "other"]:
        register(reg, tmp_path, version=name)
    with pytest.raises(VersionNotFound, match=r"task 'recommend' has no version 'v1.2'; nearest: v1.1, v1.0") as info:
        reg.get("recommend", "v1.2")
    assert "other" not in str(info.value)
    with pytest.raises(InvalidName):
        reg.get("recommend", "../../etc")
    with pytest.raises(InvalidName):
        reg.get("Recommend!", "latest")


def test_moved_folder_is_refused(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    register(reg, tmp_path, version="v1")
    os.rename(tmp_path / "reg" / "recommend" / "v1", tmp_path / "reg" / "recommend" / "v9")
    with pytest.raises(RegistryError, match="is the manifest of recommend/v1"):
        reg.get("recommend", "v9")


def test_version_ids_sort_by_time_and_do_not_collide() -> None:
    t0 = datetime(2026, 11, 28, 16, 15, 30, tzinfo=timezone.utc)
    ids = [new_version_id(t0 + timedelta(seconds=s)) for s in (0, 1, 60, 3600 * 24)]
    assert ids == sorted(ids) and ids[0].startswith("v20261128-161530-")
    assert len({new_version_id(t0) for _ in range(200)}) == 200  # 32 random bits: p(collision) ~ 5e-6
    assert all(re.fullmatch(registry_module.NAME_PATTERN, i) for i in ids)


def test_same_name_registered_concurrently_commits_once(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    sources = [make_model_dir(tmp_path / f"src{i}", seed=i) for i in range(4)]
    outcomes = in_threads(
        lambda src: reg.register("recommend", src, spec=SPEC, data_fingerprint="fp", metrics={}, version="same"), sources
    )
    assert sum(isinstance(o, registry_module.ModelVersion) for o in outcomes) == 1
    assert sum(isinstance(o, VersionExists) for o in outcomes) == 3, outcomes
    assert [v.version for v in reg.list()] == ["same"]
    reg.fetch("recommend", "same")
    assert [p.name for p in (tmp_path / "reg" / "recommend").iterdir()] == ["same"]


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
def test_concurrent_registrations_and_promotions_lose_nothing(tmp_path: Path, processes: bool) -> None:
    root = str(tmp_path / "reg")
    versions, _seconds = race_register_and_promote(root, tmp_path, writers=6, processes=processes)
    assert_nothing_lost(Registry(root), versions)


def _lose_races(monkeypatch: pytest.MonkeyPatch, intruders: Iterator[Callable[[], object]], times: int) -> None:
    """The next ``times`` stage-pointer writes lose a real race: an intruder changes the stage just before."""
    real = storage.swap_json
    state = {"left": times, "busy": False}

    def racing(uri: object, obj: object, **kw: object) -> str:
        if state["left"] and not state["busy"]:  # the intruder's own write goes straight through
            state["left"], state["busy"] = state["left"] - 1, True
            try:
                next(intruders)()
            finally:
                state["busy"] = False
        return real(uri, obj, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(storage, "swap_json", racing)


def test_a_promote_that_loses_the_race_retries_and_keeps_both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reg = Registry(tmp_path / "reg")
    v1, v2, v3 = (register(reg, tmp_path, seed=i).version for i in range(3))
    reg.promote("recommend", v1, "production")
    _lose_races(monkeypatch, iter([lambda: reg.promote("recommend", v2, "production")]), times=1)
    pointer = reg.promote("recommend", v3, "production")
    assert (pointer.version, pointer.previous) == (v3, [v1, v2])  # a plain write would have dropped v2
    assert reg.stage("recommend", "production") == pointer


def test_a_rollback_that_loses_the_race_rolls_back_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reg = Registry(tmp_path / "reg")
    v1, v2, v3 = (register(reg, tmp_path, seed=i).version for i in range(3))
    reg.promote("recommend", v1, "production")
    reg.promote("recommend", v2, "production")
    _lose_races(monkeypatch, iter([lambda: reg.promote("recommend", v3, "production")]), times=1)
    with pytest.raises(StageError, match=f"changed while rolling back: it held {v2}, another writer pointed it at {v3}"):
        reg.rollback("recommend", "production")
    pointer = reg.stage("recommend", "production")
    assert pointer is not None and (pointer.version, pointer.previous) == (v3, [v1, v2])


def test_a_promote_that_always_loses_gives_up_naming_stage_and_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = Registry(tmp_path / "reg")
    v1, v2, v3 = (register(reg, tmp_path, seed=i).version for i in range(3))
    reg.promote("recommend", v1, "production")
    reg.promote("recommend", v2, "production")
    monkeypatch.setattr(stages_module, "_SWAP_ATTEMPTS", 3)
    flip = itertools.cycle([lambda: reg.promote("recommend", v1, "production"), lambda: reg.promote("recommend", v2, "production")])
    _lose_races(monkeypatch, flip, times=3)
    with pytest.raises(StageError, match=f"stage 'production' of task 'recommend': promoting {v3} lost the race to other writers 3 times"):
        reg.promote("recommend", v3, "production")
    pointer = reg.stage("recommend", "production")
    assert pointer is not None and pointer.version == v1 and v3 not in pointer.previous  # nothing half-written


def test_import_does_no_work() -> None:
    code = "import sys, ecomine.registry; assert 'boto3' not in sys.modules and 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_all_is_complete() -> None:
    """Every public name defined in a registry module is in its ``__all__``; the package re-exports them."""
    internal = {  # what the Registry uses from its modules; callers go through the Registry
        "source_files", "verify", "commit_local", "commit_remote", "leftover_error",
        "read_pointer", "change_pointer", "promoted", "rolled_back",
    }
    assert module_exports(registry_module) - internal <= set(registry_module.__all__)
