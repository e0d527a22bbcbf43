"""CLI: bad input is one line on stderr, exit code 2, no traceback, nothing written."""

from __future__ import annotations

import json

import subprocess
import sys
from pathlib import Path

import pytest

SPEC = """
sources:
  - uri: {uri}
    columns: {{user_id: u, item_id: i, ts: t, quantity: q, price: p}}
"""
GOOD = "u,i,t,q,p\n1,a,2024-01-01 10:00:00,1,2.0\n2,b,2024-01-02 10:00:00,2,3.0\n"


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ecomine.cli.main", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def _spec(tmp_path: Path, data: str | bytes | None, name: str = "events.csv") -> Path:
    src = tmp_path / name
    if isinstance(data, bytes):
        src.write_bytes(data)
    elif data is not None:
        src.write_text(data)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(uri=src))
    return spec


def test_profile_ok(tmp_path: Path) -> None:
    r = run_cli("data", "profile", str(_spec(tmp_path, GOOD)), "--json")
    assert r.returncode == 0, r.stderr
    assert '"rows_out": 2' in r.stdout


CASES = {
    "missing file": (None, "events.csv", "file not found"),
    "empty file": ("", "events.csv", "file is empty"),
    "missing column": (GOOD.replace(",p\n", ",price\n"), "events.csv", "column 'p' (mapped to price) not found"),
    "bad timestamp": (GOOD.replace("2024-01-02 10:00:00", "yesterday"), "events.csv", "unparseable timestamp 'yesterday'"),
    "wrong type": (GOOD.replace(",2,3.0", ",two,3.0"), "events.csv", "got 'two'"),
    "corrupt parquet": (b"PAR1garbage", "events.parquet", "not a valid parquet file"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line(tmp_path: Path, case: str) -> None:
    data, name, expected = CASES[case]
    spec = _spec(tmp_path, data, name)
    out = tmp_path / "features"
    r = run_cli("data", "build", str(spec), "--out", str(out))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert expected in lines[0] and "Traceback" not in r.stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ecomine-build")]


def test_build_writes_every_table(tmp_path: Path) -> None:
    out = tmp_path / "features"
    r = run_cli("data", "build", str(_spec(tmp_path, GOOD)), "--out", str(out))
    assert r.returncode == 0, r.stderr
    names = {p.name for p in out.iterdir()}
    assert {"events.parquet", "user_sequences.parquet", "demand_daily.parquet", "risk_examples.parquet",
            "report.json", "_SUCCESS.json"} <= names
    again = run_cli("data", "build", str(_spec(tmp_path, GOOD)), "--out", str(out))
    assert again.returncode == 2 and "not empty" in again.stderr


def test_unknown_spec_field_is_one_line(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("sources: [{uri: x.csv, columns: {user_id: u, item_id: i, ts: t}}]\nfilterz: []\n")
    r = run_cli("data", "profile", str(spec))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "filterz" in r.stderr


def test_schema_prints_json() -> None:
    from ecomine.specs import DataSpec, spec_models

    r = run_cli("schema", "data")
    assert r.returncode == 0 and json.loads(r.stdout) == DataSpec.model_json_schema(by_alias=True)
    everything = run_cli("schema")
    assert everything.returncode == 0
    assert json.loads(everything.stdout) == {k: m.model_json_schema(by_alias=True) for k, m in spec_models().items()}
    bad = run_cli("schema", "nope")
    assert bad.returncode == 2 and "unknown spec kind 'nope'" in bad.stderr
