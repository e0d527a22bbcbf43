"""Build every feature table from a DataSpec and write them together, or not at all.

The last step of the data layer (`ecomine data build SPEC --out URI`): clean
events -> user sequences, RFM, daily/weekly demand, risk examples, item
catalogue, behaviour text. Tables are computed in memory first and written to a
staging folder; only a complete set is moved (local) or copied (s3://) into
place, with `_SUCCESS.json` written last as the completion marker.

Cleaning runs in this process (`cleaning.load_events`) or through Ray Data
(`distributed.load_events_ray`), as `DataSpec.engine` or the caller says; both
give the same rows in the same order, so the tables written are the same. The
feature tables are then built in this process from the clean events either way.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import polars as pl

from ecomine.data.cleaning import CleaningReport, load_events
from ecomine.specs import DataSpec

__all__ = ["FEATURE_TABLES", "ENGINES", "clean_events", "build_features", "write_features"]

ENGINES = ("local", "ray")

FEATURE_TABLES = (
    "events",
    "user_sequences",
    "rfm",
    "demand_daily",
    "demand_weekly",
    "risk_examples",
    "item_catalogue",
    "user_text",
)


def build_features(events: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """All feature tables of one clean event log, by name."""
    from ecomine.data.features import demand_series, item_catalogue, risk_examples, rfm_features, user_sequences
    from ecomine.data.text import user_behaviour_text

    catalogue = item_catalogue(events)
    return {
        "events": events,
        "user_sequences": user_sequences(events, dedupe_consecutive=False),
        "rfm": rfm_features(events),
        "demand_daily": demand_series(events, freq="1d"),
        "demand_weekly": demand_series(events, freq="1w"),
        "risk_examples": risk_examples(events),
        "item_catalogue": catalogue,
        "user_text": user_behaviour_text(events, catalogue=catalogue),
    }


def clean_events(spec: DataSpec, engine: str | None = None) -> tuple[pl.DataFrame, CleaningReport]:
    """Clean events and report by `engine` (default: the spec's): `local` or `ray` (same result)."""
    engine = engine or spec.engine
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {list(ENGINES)}, got {engine!r}")
    if engine == "local":
        return load_events(spec)
    from ecomine.data.distributed import load_events_ray

    return load_events_ray(spec)


def write_features(spec: DataSpec, out: str, *, engine: str | None = None) -> tuple[dict[str, int], CleaningReport]:
    """Clean, build and write all tables under `out` (a folder or s3:// prefix); rows per table.

    `engine` overrides `spec.engine` (local | ray)."""
    from ecomine import storage

    t0 = time.perf_counter()
    if storage.is_s3(out):
        dest = None
    else:
        dest = storage.local_path(out)
        if dest.exists() and any(dest.iterdir()):
            from ecomine.data.readers import DataError

            raise DataError(f"{out}: output folder exists and is not empty; choose a new folder")
    events, report = clean_events(spec, engine)
    tables = build_features(events)
    staging_parent = dest.parent if dest is not None else None
    if staging_parent is not None:
        staging_parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".ecomine-build-", dir=staging_parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        for name, df in tables.items():
            df.write_parquet(staging / f"{name}.parquet")
        (staging / "report.json").write_text(report.model_dump_json(indent=2))
        rows = {name: df.height for name, df in tables.items()}
        marker = {"tables": rows, "fingerprint": report.fingerprint, "seconds": round(time.perf_counter() - t0, 3)}
        if dest is not None:
            storage.write_json(str(staging / "_SUCCESS.json"), marker)
            if dest.exists():
                dest.rmdir()  # empty (checked above)
            staging.rename(dest)
        else:
            for f in sorted(staging.iterdir()):
                storage.write_bytes(storage.join(out, f.name), f.read_bytes())
            storage.write_json(storage.join(out, "_SUCCESS.json"), marker)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return rows, report
