"""`ecomine data build` rows/s with each engine: local (polars in-process) vs ray (cleaning through Ray Data).

    flock /tmp/ecomine-heavy.lock .venv/bin/python benchmarks/data_build_engines.py [--spec online-retail]

Times `write_features` (clean + every feature table + parquet written) on the same spec
with `engine=local` then `engine=ray` (a local Ray of 2 CPUs, started before the clock;
Ray Data's own worker start-up is inside the figure), checks the two folders hold the same
tables, and prints rows read per second and `cat /proc/loadavg`. Writes
benchmarks/results/data_build_engines.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "data_build_engines.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", default="online-retail")
    args = ap.parse_args()

    import polars as pl
    import ray
    from polars.testing import assert_frame_equal

    from ecomine.data.build import FEATURE_TABLES, write_features
    from ecomine.datasets import resolve_data_spec_path
    from ecomine.specs import DataSpec, load_spec

    spec = load_spec(resolve_data_spec_path(args.spec), DataSpec)
    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    root = Path(tempfile.mkdtemp(prefix="ecomine-build-bench-"))
    figures = {}
    for engine in ("local", "ray"):
        t0 = time.perf_counter()
        rows, report = write_features(spec, str(root / engine), engine=engine)
        s = time.perf_counter() - t0
        figures[engine] = {"seconds": round(s, 2), "rows_read": report.rows_read, "rows_out": report.rows_out,
                           "rows_per_s": round(report.rows_read / s), "loadavg": Path("/proc/loadavg").read_text().strip()}
        print(f"{engine:5s}  {report.rows_read:,} rows read in {s:.1f} s = {report.rows_read / s:,.0f} rows/s   "
              f"loadavg {figures[engine]['loadavg']}")
    ray.shutdown()
    for name in FEATURE_TABLES:
        a, b = (pl.read_parquet(root / e / f"{name}.parquet") for e in ("local", "ray"))
        assert_frame_equal(a, b, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)
    print("same tables from both engines")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "spec": args.spec, "figures": figures,
        "ray_vs_local": round(figures["ray"]["rows_per_s"] / figures["local"]["rows_per_s"], 3),
        "command": "flock /tmp/ecomine-heavy.lock .venv/bin/python benchmarks/data_build_engines.py",
    }, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
