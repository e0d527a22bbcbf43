"""Shared test fixtures: paths to the shared data, and the markers' skip rules."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()
ONLINE_RETAIL = SHARED_DATA / "online_retail"


def pytest_configure(config: pytest.Config) -> None:
    """`ecomine serve up` records where it deployed (ecomine.serve.deployed): in a folder of this run's,
    never the user's ~/.local/state, and inherited by every CLI the tests start."""
    os.environ.setdefault("ECOMINE_STATE_DIR", tempfile.mkdtemp(prefix="ecomine-state-"))


@pytest.fixture(scope="session")
def online_retail_dir() -> Path:
    if not (ONLINE_RETAIL / "online_retail_2010_2011.parquet").exists():
        pytest.skip(f"shared Online Retail data not found at {ONLINE_RETAIL} (../shared is absent)")
    return ONLINE_RETAIL
