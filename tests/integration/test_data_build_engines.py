"""`ecomine data build --engine ray` (and `engine: ray` in a DataSpec) writes the same folder as the
in-process engine: the clean events bit for bit, every feature table equal row for row (order
included; floats to 1e-9, the rounding by which polars' multi-threaded sums differ between two
runs of the same engine), the same report and `_SUCCESS.json` but for the seconds. On the seeded synthetic log, through the CLI; on both Online
Retail files the same tables are compared in test_ray_data_cleaning (one Ray cleaning of the
million rows serves both checks)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ecomine.data.build import FEATURE_TABLES, write_features
from ecomine.specs import DataSpec, load_spec

pytestmark = pytest.mark.integration

CANONICAL = ("user_id", "item_id", "ts", "event", "quantity", "price", "order_id", "item_text")


def assert_same_build(local: Path, ray: Path) -> None:
    for name in FEATURE_TABLES:
        a, b = pl.read_parquet(local / f"{name}.parquet"), pl.read_parquet(ray / f"{name}.parquet")
        assert a.height > 0, name  # two empty tables would prove nothing
        if name == "events":
            assert a.equals(b), name
        else:
            assert_frame_equal(a, b, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)
    report_a, report_b = (json.loads((d / "report.json").read_text()) for d in (local, ray))
    assert {**report_a, "seconds": 0} == {**report_b, "seconds": 0}
    done_a, done_b = (json.loads((d / "_SUCCESS.json").read_text()) for d in (local, ray))
    assert {**done_a, "seconds": 0} == {**done_b, "seconds": 0}


def test_synthetic_log_cli_engine_ray_same_as_local(ray_session, tmp_path: Path) -> None:
    from ecomine.datasets.synthetic import SynthParams, generate, write

    log = generate(SynthParams(users=150, items=50, days=90, seed=4))
    write(log, str(tmp_path / "synth"))
    # Duplicated rows and a postage line, so cleaning has work to do on both engines.
    events = pl.read_parquet(tmp_path / "synth" / "events.parquet")
    extra = events.head(40).with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("POST"))
                                         .otherwise(pl.col("item_id")).alias("item_id"))
    pl.concat([events, extra]).write_parquet(tmp_path / "events.parquet")
    columns = ", ".join(f"{c}: {c}" for c in CANONICAL)
    spec = tmp_path / "synth.yaml"
    spec.write_text(f"sources: [{{uri: '{tmp_path / 'events.parquet'}', columns: {{{columns}}}}}]\nengine: ray\n")

    local = tmp_path / "local"
    write_features(load_spec(spec, DataSpec), str(local), engine="local")
    r = subprocess.run([sys.executable, "-m", "ecomine.cli.main", "data", "build", str(spec), "--out", str(tmp_path / "ray")],
                       capture_output=True, text=True, timeout=180)  # joins the session's cluster (RAY_ADDRESS)
    assert r.returncode == 0, r.stderr[-2000:]
    assert_same_build(local, tmp_path / "ray")
    report = json.loads((local / "report.json").read_text())
    assert report["dropped"]["duplicate"] >= 39 and report["dropped"]["non_product"] == 1

