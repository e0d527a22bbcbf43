"""`data build` to an s3:// prefix on the loopback moto server, and an unreachable endpoint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ecomine import storage
from ecomine.data.build import write_features
from ecomine.specs import DataSpec

pytestmark = pytest.mark.integration

CSV = "u,i,t,q,p\n1,a,2024-01-01 10:00:00,1,2.0\n1,b,2024-01-03 10:00:00,1,2.0\n2,b,2024-01-02 10:00:00,2,3.0\n"


def _spec(uri: str) -> DataSpec:
    return DataSpec.model_validate({"sources": [{"uri": uri, "format": "csv", "columns": {
        "user_id": "u", "item_id": "i", "ts": "t", "quantity": "q", "price": "p"}}]})


def test_build_to_s3_and_read_from_s3(s3_prefix: str, tmp_path: Path) -> None:
    src = tmp_path / "events.csv"
    src.write_text(CSV)
    storage.write_bytes(f"{s3_prefix}/raw/events.csv", src.read_bytes())
    rows, report = write_features(_spec(f"{s3_prefix}/raw/events.csv"), f"{s3_prefix}/features")
    assert report.rows_out == 3 and rows["user_sequences"] == 2
    listed = {u.rsplit("/", 1)[-1] for u in storage.list_prefix(f"{s3_prefix}/features")}
    assert {"events.parquet", "demand_daily.parquet", "_SUCCESS.json"} <= listed
    assert storage.read_parquet(f"{s3_prefix}/features/events.parquet").height == 3


def test_unreachable_s3_endpoint_is_one_line(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("sources: [{uri: 's3://bucket/events.csv', columns: {user_id: u, item_id: i, ts: t}}]\n")
    env = {"PATH": "/usr/bin:/bin", "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x",
           "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1", "HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "ecomine.cli.main", "data", "build", str(spec), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "127.0.0.1:9" in r.stderr
    assert not (tmp_path / "o").exists()
