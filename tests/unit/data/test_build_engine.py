"""`DataSpec.engine` (local | ray): a typo is an error naming the field; the engine never changes
the data fingerprint (registered versions keep theirs); the in-process engine is the default."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecomine.data.build import write_features
from ecomine.data.cleaning import SourceReport, data_fingerprint
from ecomine.specs import DataSpec, SpecError, load_spec

CSV = "u,i,t\n1,a,2024-01-01 10:00:00\n2,b,2024-01-02 10:00:00\n"


def _yaml(tmp_path: Path, extra: str) -> Path:
    (tmp_path / "e.csv").write_text(CSV)
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"sources: [{{uri: '{tmp_path / 'e.csv'}', columns: {{user_id: u, item_id: i, ts: t}}}}]\n{extra}")
    return spec


def test_unknown_engine_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"engine: Input should be 'local' or 'ray' \(got 'spark'\)"):
        load_spec(_yaml(tmp_path, "engine: spark\n"), DataSpec)


def test_engine_leaves_the_fingerprint_alone(tmp_path: Path) -> None:
    local = load_spec(_yaml(tmp_path, ""), DataSpec)
    ray = load_spec(_yaml(tmp_path, "engine: ray\n"), DataSpec)
    assert local.engine == "local" and ray.engine == "ray"
    sources = [SourceReport(uri="x", rows_read=2, sha256="0" * 64)]
    assert data_fingerprint(local, sources) == data_fingerprint(ray, sources)
    other = local.model_copy(update={"name": "other"})
    assert data_fingerprint(other, sources) != data_fingerprint(local, sources)  # the spec still counts


def test_unknown_engine_argument_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="engine must be one of"):
        write_features(load_spec(_yaml(tmp_path, ""), DataSpec), str(tmp_path / "out"), engine="spark")
    assert not (tmp_path / "out").exists()
