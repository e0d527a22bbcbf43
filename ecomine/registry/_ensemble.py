"""An ensemble version's own file: its members pinned by version and content digest, with their weights.

Sits in `ecomine.registry` (it only reads and writes registry versions; import it from there):
`ecomine.ensemble.build` writes `ensemble.json` into a version of kind ensemble,
`ecomine.predict.runtime` expands such a version into its members at load time.
A member is pinned by its version id and the sha256 of its manifest's file
table, so a member whose files (and manifest) were rewritten after the
ensemble was built is refused, not silently served.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ecomine.registry._errors import ChecksumMismatch, RegistryError
from ecomine.registry._manifest import Manifest, ModelVersion
from ecomine.registry._registry import Registry

__all__ = ["ENSEMBLE_FILE", "PinnedMember", "EnsembleManifest", "content_digest", "read_ensemble",
           "write_ensemble", "pinned_members", "is_ensemble"]

ENSEMBLE_FILE = "ensemble.json"


class PinnedMember(BaseModel):
    """One member: which version, its content digest, its weight and (recommend) softmax temperature."""

    model_config = ConfigDict(extra="forbid")

    version: str
    digest: str = Field(description="sha256 of the member manifest's file table (content_digest)")
    weight: float = Field(ge=0)
    temperature: float = Field(1.0, gt=0, description="recommend: softmax(temperature * scores)")


class EnsembleManifest(BaseModel):
    """What `ensemble.json` holds."""

    model_config = ConfigDict(extra="forbid")

    format: int = 1
    task: str
    method: str
    members: list[PinnedMember] = Field(min_length=2)
    recalibration: tuple[float, float] | None = Field(None, description="risk: Platt (a, b) of the mixture")
    threshold: float | None = Field(None, description="risk: the decision threshold chosen on the recalibrated mixture")


def content_digest(manifest: Manifest) -> str:
    """sha256 of a version's file table: changes whenever any of its files does."""
    return hashlib.sha256(json.dumps(manifest.files, sort_keys=True).encode()).hexdigest()


def write_ensemble(folder: str | Path, ensemble: EnsembleManifest) -> Path:
    path = Path(folder) / ENSEMBLE_FILE
    path.write_text(ensemble.model_dump_json(indent=2))
    return path


def read_ensemble(folder: str | Path) -> EnsembleManifest | None:
    """The folder's ensemble manifest, or None when the version is a single model."""
    path = Path(folder) / ENSEMBLE_FILE
    if not path.exists():
        return None
    return EnsembleManifest.model_validate_json(path.read_text())


def pinned_members(registry: Registry, task: str, version: str, ensemble: EnsembleManifest) -> list[ModelVersion]:
    """Each member's registered version, checked against its pin (ChecksumMismatch names the member)."""
    out = []
    for i, m in enumerate(ensemble.members):
        try:
            mv = registry.get(task, m.version)
        except RegistryError as exc:
            raise RegistryError(f"{task}/{version}: ensemble member {i} ({m.version}) is not in the registry: {exc}") from exc
        actual = content_digest(mv)
        if actual != m.digest:
            raise ChecksumMismatch(
                f"{task}/{version}: ensemble member {i} ({task}/{m.version}) changed since the ensemble was built "
                f"(pinned digest {m.digest[:12]}..., now {actual[:12]}...)",
                file=f"{task}/{m.version}/manifest.json", expected=m.digest, actual=actual,
            )
        if is_ensemble(mv):
            raise RegistryError(f"{task}/{version}: ensemble member {i} ({m.version}) is itself an ensemble")
        out.append(mv)
    return out


def is_ensemble(manifest: Manifest) -> bool:
    """Whether a version is an ensemble, from its manifest alone (its file table lists ensemble.json)."""
    return ENSEMBLE_FILE in manifest.files
