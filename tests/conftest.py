"""Shared test fixtures: paths to the shared data, and the markers' skip rules."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()
ONLINE_RETAIL = SHARED_DATA / "online_retail"


@pytest.fixture(scope="session")
def online_retail_dir() -> Path:
    if not (ONLINE_RETAIL / "online_retail_2010_2011.parquet").exists():
        pytest.skip(f"shared Online Retail data not found at {ONLINE_RETAIL} (../shared is absent)")
    return ONLINE_RETAIL
