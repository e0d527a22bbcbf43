"""The seal of a version: ``manifest.json`` (sha256 of every file, spec, data, libraries) and its checks.

What may go into a version (no pickles, real safetensors headers, no file the
registry writes itself) is checked here before anything is copied, and
:func:`verify` compares a folder with its manifest file by file. Used by the
registry on register and fetch, and by ``ensemble_manifest`` for pinned members.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ecomine import storage
from ecomine.registry._errors import ChecksumMismatch, RegistryError

__all__ = ["MANIFEST_FILE", "METRICS_FILE", "Manifest", "ModelVersion", "library_versions", "source_files", "verify"]

MANIFEST_FILE = "manifest.json"
METRICS_FILE = "metrics.json"
# Formats that unpickle (run code) on load: never accepted in a version.
_PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib"})
_LIBRARIES = ("torch", "transformers", "ray", "polars", "pyarrow", "safetensors", "pydantic", "ecomine")


class Manifest(BaseModel):
    """What ``manifest.json`` holds: the seal of one model version."""

    model_config = ConfigDict(extra="ignore")

    format: int = 1
    task: str
    version: str
    created_at: datetime
    files: dict[str, str]  # relative POSIX path -> sha256 hex, every file but manifest.json
    spec: dict[str, Any]  # the spec that trained it
    data_fingerprint: str
    metrics: dict[str, Any]  # same content as metrics.json
    tags: list[str] = []
    libraries: dict[str, str | None] = {}
    parent: str | None = None
    notes: str | None = None


class ModelVersion(Manifest):
    """A registered version: its manifest, where it lives, and the stages pointing at it."""

    uri: str
    stages: list[str] = []


def library_versions() -> dict[str, str | None]:
    """Versions of python and the libraries a model depends on (None where not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def _walk(folder: Path) -> list[str]:
    """Relative POSIX paths of the files under ``folder``, sorted."""
    return sorted(
        Path(dirpath, name).relative_to(folder).as_posix()
        for dirpath, _dirs, names in os.walk(folder)
        for name in names
    )


def _as_json_dict(kind: str, value: Mapping[str, Any] | BaseModel) -> dict[str, Any]:
    data = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    if not isinstance(data, Mapping):
        raise RegistryError(f"{kind} must be a mapping, got {type(value).__name__}")
    try:
        return dict(json.loads(json.dumps(dict(data))))
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"{kind} is not JSON-serialisable: {exc}") from exc


def _check_safetensors(path: Path, label: str) -> None:
    """Cheap header check: 8-byte little-endian length, then a JSON object of that size."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if length <= 0 or length > size - 8:
            raise RegistryError(f"{label}: not a safetensors file (bad header length)")
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RegistryError(f"{label}: not a safetensors file (header is not JSON: {exc})") from exc
    if not isinstance(header, dict):
        raise RegistryError(f"{label}: not a safetensors file (header is not a JSON object)")


def source_files(src: Path, label: str) -> list[str]:
    """The files of the folder ``src`` to register as ``label``, sorted; RegistryError for the first refused."""
    if not src.is_dir():
        raise RegistryError(f"{label}: files_dir {str(src)!r} is not a folder")
    rels = _walk(src)
    if not rels:
        raise RegistryError(f"{label}: files_dir {str(src)!r} is empty")
    for rel in rels:
        if rel in (MANIFEST_FILE, METRICS_FILE):
            raise RegistryError(
                f"{label}: {rel} in files_dir {str(src)!r} is written by the registry; "
                + ("pass metrics=... instead" if rel == METRICS_FILE else "remove it")
            )
        suffix = Path(rel).suffix.lower()
        if suffix in _PICKLE_SUFFIXES:
            raise RegistryError(
                f"{label}: file {rel} looks like a pickle-format checkpoint ({suffix}); "
                "save weights with safetensors"
            )
        if suffix == ".safetensors":
            _check_safetensors(src / rel, f"{label}: file {rel}")
    return rels


def verify(folder: str | os.PathLike[str], manifest: Manifest, *, where: str = "folder") -> None:
    """Check that ``folder`` holds exactly the manifest's files with the manifest's sha256.

    A ``manifest.json`` in the folder must equal ``manifest``. Raises ChecksumMismatch
    naming the file and both hashes.
    """
    path = Path(folder)
    label = f"{manifest.task}/{manifest.version}"
    actual = set(_walk(path)) - {MANIFEST_FILE}
    for rel in sorted(manifest.files):
        if rel not in actual:
            raise ChecksumMismatch(
                f"{label}: file {rel} (manifest sha256 {manifest.files[rel]}) is missing from the {where} {path}",
                file=rel, expected=manifest.files[rel], actual=None,
            )
    for rel in sorted(actual - set(manifest.files)):
        digest = storage.sha256_file(path / rel)
        raise ChecksumMismatch(
            f"{label}: file {rel} (sha256 {digest}) in the {where} {path} is not in the manifest",
            file=rel, expected=None, actual=digest,
        )
    for rel, expected in sorted(manifest.files.items()):
        digest = storage.sha256_file(path / rel)
        if digest != expected:
            raise ChecksumMismatch(
                f"{label}: file {rel} in the {where} {path} has sha256 {digest}, the manifest says {expected}",
                file=rel, expected=expected, actual=digest,
            )
    local_manifest = path / MANIFEST_FILE
    if local_manifest.exists():
        try:
            same = Manifest.model_validate(storage.read_json(local_manifest)) == Manifest.model_validate(
                manifest.model_dump()
            )
        except (ValidationError, storage.StorageError):
            same = False
        if not same:
            digest = storage.sha256_file(local_manifest)
            raise ChecksumMismatch(
                f"{label}: {MANIFEST_FILE} in the {where} {path} (sha256 {digest}) differs from the registry's",
                file=MANIFEST_FILE, expected=None, actual=digest,
            )
