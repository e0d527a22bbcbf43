"""`ecomine score`: bad input is one line naming the field and value, exit 2, nothing written, no Ray started."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from pydantic import ValidationError

from ecomine.specs import ScoreSpec, load_spec


@pytest.fixture()
def registry(tmp_path: Path) -> Path:
    from ecomine.registry import Registry

    folder = tmp_path / "v"
    folder.mkdir()
    (folder / "standin.json").write_text('{"kind": "risk", "scale": 0.2, "threshold": 0.5}')
    Registry(tmp_path / "registry").register("risk", folder, spec={"task": "risk", "standin": True},
                                             data_fingerprint="x", metrics={}, version="risk-a")
    pl.DataFrame({"item_id": ["a"], "quantity": [1]}).write_parquet(tmp_path / "lines.parquet")
    return tmp_path / "registry"


def _run(tmp_path: Path, yaml: str, *extra: str) -> subprocess.CompletedProcess[str]:
    spec = tmp_path / "score.yaml"
    spec.write_text(yaml)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "RAY_ADDRESS": "127.0.0.1:9"}  # a Ray start would fail
    return subprocess.run([sys.executable, "-m", "ecomine.cli.main", "score", str(spec), *extra], capture_output=True,
                          text=True, env=env, timeout=120, cwd=Path(__file__).resolve().parents[3])


def test_set_overrides_a_field_and_a_bad_one_is_one_line(registry: Path, tmp_path: Path) -> None:
    good = (f"task: risk\nregistry: {registry}\nversion: risk-a\ninputs: {{uri: '{tmp_path}/lines.parquet'}}\n"
            f"output: {tmp_path / 'out'}\n")
    r = _run(tmp_path, good, "--set", "version=risk-b")  # the file names risk-a; --set wins
    assert r.returncode == 2 and "version: task 'risk' has no version 'risk-b'" in " ".join(r.stderr.split()), r.stderr
    r = _run(tmp_path, good, "--set", "actors=0")
    assert r.returncode == 2 and "actors: Input should be greater than or equal to 1 (got 0)" in " ".join(r.stderr.split())
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("version: risk-b", "version: task 'risk' has no version 'risk-b'; nearest: risk-a"),
        ("version: production", "version: stage 'production' of task 'risk' holds no version"),
        ("inputs: {uri: '{tmp}/missing.parquet'}", "inputs.uri: {tmp}/missing.parquet: not found"),
        ("inputs: {uri: '{tmp}/lines.parquet'}\nhorizon: 3", "horizon applies to task demand, not risk"),
        ("inputs: {uri: '{tmp}/lines.parquet'}\nbatch: 3", "batch: Extra inputs are not permitted (got 3)"),
        ("inputs: {uri: '{tmp}/lines.parquet'}\nactors: 0", "actors: Input should be greater than or equal to 1 (got 0)"),
        ("loader: nowhere.at_all:load", "loader: risk: loader 'nowhere.at_all:load' is not importable"),
    ],
    ids=["missing-version", "empty-stage", "missing-input", "other-task-field", "unknown-field", "bad-value", "bad-loader"],
)
def test_bad_input_is_one_line(registry: Path, tmp_path: Path, case: str, needle: str) -> None:
    case, needle = case.replace("{tmp}", str(tmp_path)), needle.replace("{tmp}", str(tmp_path))
    lines = {"task": "risk", "registry": str(registry), "version": "risk-a",
             "inputs": f"{{uri: '{tmp_path}/lines.parquet'}}", "output": str(tmp_path / "out")}
    for line in case.splitlines():
        lines[line.split(":", 1)[0]] = line.split(":", 1)[1].strip()
    r = _run(tmp_path, "".join(f"{k}: {v}\n" for k, v in lines.items()))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert needle in " ".join(r.stderr.split()), r.stderr
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_output_not_empty_is_refused(registry: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.parquet").write_bytes(b"keep me")
    r = _run(tmp_path, f"task: risk\nregistry: {registry}\nversion: risk-a\ninputs: {{uri: '{tmp_path}/lines.parquet'}}\n"
                       f"output: {tmp_path / 'out'}\n")
    assert r.returncode == 2 and "output: " in r.stderr and "exists and is not empty" in r.stderr, r.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["old.parquet"]


def test_shipped_score_configs_load() -> None:
    configs = sorted((Path(__file__).resolve().parents[3] / "score_configs").rglob("*.yaml"))
    assert configs, "score_configs/ holds no YAML"
    for path in configs:
        spec = load_spec(path, ScoreSpec)
        assert path.read_text().startswith("#") and "ecomine score" in path.read_text().splitlines()[0], path
        assert spec.kind == "score"
    with pytest.raises(ValidationError, match="inputs: set kind"):
        ScoreSpec.model_validate({"task": "recommend", "inputs": {}, "output": "o"})


def test_a_horizon_beyond_every_members_training_is_refused_before_ray(tmp_path: Path) -> None:
    from ecomine.registry import EnsembleManifest, PinnedMember, Registry, content_digest, write_ensemble

    reg = Registry(tmp_path / "registry")
    for version, horizon in (("dem-4", 4), ("dem-8", 8)):
        folder = tmp_path / version
        folder.mkdir()
        (folder / "config.json").write_text("{}")
        reg.register("demand", folder, spec={"task": "demand", "model": {"horizon": horizon}}, data_fingerprint="x",
                     metrics={}, version=version)
    ens = tmp_path / "ens"
    ens.mkdir()
    members = [PinnedMember(version=v, digest=content_digest(reg.get("demand", v)), weight=0.5, temperature=1.0)
               for v in ("dem-4", "dem-8")]
    write_ensemble(ens, EnsembleManifest(task="demand", method="likelihood", members=members))
    reg.register("demand", ens, spec={"kind": "ensemble"}, data_fingerprint="x", metrics={}, version="dem-ens")
    pl.DataFrame({"item_id": ["a"]}).write_parquet(tmp_path / "items.parquet")
    base = (f"task: demand\nregistry: {tmp_path / 'registry'}\ninputs: {{uri: '{tmp_path}/items.parquet'}}\n"
            f"output: {tmp_path / 'out'}\n")
    for version, horizon, limit in (("dem-8", 9, 8), ("dem-ens", 5, 4)):  # an ensemble: its shortest member
        r = _run(tmp_path, base + f"version: {version}\nhorizon: {horizon}\n")
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert f"horizon: {horizon} is beyond what demand/{version} was trained for (at most {limit} periods)" in r.stderr
    assert not (tmp_path / "out").exists()
