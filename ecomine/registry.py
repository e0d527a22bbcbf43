"""Model versions and stages: one folder per version, sealed by a sha256 manifest.

Sits after train and before serve: train (and tuning) register versions here;
serve fetches them by id, by stage (``staging``/``production``) or as ``latest``.
The root is a local folder or an ``s3://`` prefix; all I/O goes through ecomine.storage.

Layout::

    <root>/<task>/<version>/            weights (*.safetensors), config.json, vocabularies,
                                        metrics.json, extra files, manifest.json (written last)
    <root>/<task>/stages/<stage>.json   {"version", "previous": [older, ..., newest], "updated_at"}

A version exists once its ``manifest.json`` does: locally the folder is staged
in ``<root>/<task>/.tmp-*`` and renamed into place; on S3 the manifest is the
last object written. Stage pointers change with one atomic write.

Exceptions::

    RegistryError                 anything the registry refuses; names task, version, file
    ├── InvalidName               a task, version or stage name that is not allowed (also ValueError)
    ├── VersionNotFound           unknown task/version (lists the nearest), empty stage, nothing registered
    ├── VersionExists             registering a version id that is taken
    ├── StageError                rollback with no history, delete of a version a stage points at
    └── ChecksumMismatch          a file differs from, is missing from, or is not in the manifest
    ecomine.storage.StorageError  passes through unchanged (unreachable S3, access denied, ...)
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import secrets
import shutil
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, ValidationError

from ecomine import storage
from ecomine.storage import S3Options, StorageNotFound

__all__ = [
    "Stage",
    "STAGES",
    "NAME_PATTERN",
    "MANIFEST_FILE",
    "METRICS_FILE",
    "Manifest",
    "ModelVersion",
    "StagePointer",
    "Registry",
    "RegistryError",
    "InvalidName",
    "VersionNotFound",
    "VersionExists",
    "StageError",
    "ChecksumMismatch",
    "new_version_id",
    "library_versions",
]

Stage = Literal["staging", "production"]
STAGES: tuple[str, ...] = get_args(Stage)
NAME_PATTERN = r"[a-z0-9][a-z0-9._-]{0,63}"
_NAME_RE = re.compile(NAME_PATTERN)
_RESERVED_VERSIONS = frozenset({"latest", "stages", *STAGES})
MANIFEST_FILE = "manifest.json"
METRICS_FILE = "metrics.json"
_STAGES_DIR = "stages"
_MAX_HISTORY = 100
# Formats that unpickle (run code) on load: never accepted in a version.
_PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib"})
_LIBRARIES = ("torch", "transformers", "ray", "polars", "pyarrow", "safetensors", "pydantic", "ecomine")


# --------------------------------------------------------------------------- errors


class RegistryError(Exception):
    """The registry refused or could not do what was asked."""


class InvalidName(RegistryError, ValueError):
    """A task, version or stage name outside ``NAME_PATTERN`` or reserved."""


class VersionNotFound(RegistryError):
    """No such task/version, an empty stage, or no versions at all."""


class VersionExists(RegistryError):
    """The version id is already registered for this task."""


class StageError(RegistryError):
    """A stage operation that cannot be done (nothing to roll back to, stage holds the version)."""


class ChecksumMismatch(RegistryError):
    """A file of a version differs from its manifest; ``expected``/``actual`` are None when absent."""

    def __init__(self, message: str, *, file: str, expected: str | None, actual: str | None) -> None:
        super().__init__(message)
        self.file = file
        self.expected = expected
        self.actual = actual

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_mismatch, (str(self), self.file, self.expected, self.actual))


def _rebuild_mismatch(message: str, file: str, expected: str | None, actual: str | None) -> ChecksumMismatch:
    return ChecksumMismatch(message, file=file, expected=expected, actual=actual)


# --------------------------------------------------------------------------- models


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


class StagePointer(BaseModel):
    """``<root>/<task>/stages/<stage>.json``: the version a stage serves and its history."""

    model_config = ConfigDict(extra="ignore")

    stage: str
    version: str
    previous: list[str] = []  # oldest first; rollback returns to previous[-1]
    updated_at: datetime


# --------------------------------------------------------------------------- helpers


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_version_id(now: datetime | None = None) -> str:
    """A sortable, unique-enough id: ``v<UTC yyyymmdd-hhmmss>-<8 random hex>``.

    32 random bits per second: two ids of the same second collide about once in
    four billion pairs, and :meth:`Registry.register` retries with a fresh id if one does.
    """
    moment = (now or _utcnow()).astimezone(timezone.utc)
    return f"v{moment:%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"


def library_versions() -> dict[str, str | None]:
    """Versions of python and the libraries a model depends on (None where not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def _check_name(kind: str, value: object) -> str:
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise InvalidName(f"{kind} {value!r} is not a valid name: use {NAME_PATTERN}")
    return value


def _check_version(version: object) -> str:
    _check_name("version", version)
    if version in _RESERVED_VERSIONS:
        raise InvalidName(f"version {version!r} is reserved (it names a ref): choose another")
    return str(version)


def _check_stage(stage: object) -> str:
    if stage not in STAGES:
        raise InvalidName(f"stage {stage!r} is not one of {', '.join(STAGES)}")
    return str(stage)


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


def _default_cache_dir() -> Path:
    if os.environ.get("ECOMINE_CACHE_DIR"):
        return Path(os.environ["ECOMINE_CACHE_DIR"]) / "registry"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ecomine" / "registry"


# --------------------------------------------------------------------------- the registry


class Registry:
    """Model versions of every task under one root (a local folder or an ``s3://`` prefix).

    Nothing is touched until a method is called. ``s3`` configures the S3 client
    (default: the AWS environment); ``cache_dir`` is where :meth:`fetch` puts
    versions downloaded from S3 (default ``$ECOMINE_CACHE_DIR/registry`` or
    ``~/.cache/ecomine/registry``).
    """

    def __init__(self, root: str | os.PathLike[str], *, s3: S3Options | None = None,
                 cache_dir: str | os.PathLike[str] | None = None) -> None:
        text = os.fspath(root)
        self.root = text.rstrip("/") if text.rstrip("/") and not text.endswith("://") else text
        self.s3 = s3
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None

    def __repr__(self) -> str:
        return f"Registry({self.root!r})"

    @property
    def is_local(self) -> bool:
        return not storage.is_s3(self.root)

    # ----------------------------------------------------------------- paths

    def _task_uri(self, task: str) -> str:
        return storage.join(self.root, task)

    def _version_uri(self, task: str, version: str) -> str:
        return storage.join(self.root, task, version)

    def _stage_uri(self, task: str, stage: str) -> str:
        return storage.join(self.root, task, _STAGES_DIR, f"{stage}.json")

    # ----------------------------------------------------------------- register

    def register(
        self,
        task: str,
        files_dir: str | os.PathLike[str],
        *,
        spec: Mapping[str, Any] | BaseModel,
        data_fingerprint: str,
        metrics: Mapping[str, Any],
        tags: Iterable[str] = (),
        version: str | None = None,
        parent: str | None = None,
        notes: str | None = None,
    ) -> ModelVersion:
        """Copy the local folder ``files_dir`` in as a new version of ``task`` and seal it.

        ``metrics`` is written as ``metrics.json`` (``files_dir`` must not hold one, nor a
        ``manifest.json``); pickle-format files (.bin, .pt, .pkl, ...) are refused and
        ``*.safetensors`` headers are checked. On any failure nothing is registered.
        """
        if isinstance(tags, str):
            raise RegistryError(f"{task}: tags must be a list of strings, not the string {tags!r}")
        tag_list = [str(t) for t in tags]
        if version is not None:
            return self._register(task, files_dir, spec, data_fingerprint, metrics, tag_list, version, parent, notes)
        for attempt in range(3):  # a generated id: on the rare collision, draw another
            try:
                return self._register(
                    task, files_dir, spec, data_fingerprint, metrics, tag_list, new_version_id(), parent, notes
                )
            except VersionExists:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _register(
        self,
        task: str,
        files_dir: str | os.PathLike[str],
        spec: Mapping[str, Any] | BaseModel,
        data_fingerprint: str,
        metrics: Mapping[str, Any],
        tag_list: list[str],
        version: str,
        parent: str | None,
        notes: str | None,
    ) -> ModelVersion:
        _check_name("task", task)
        _check_version(version)
        if parent is not None:
            _check_name("parent version", parent)
        src = Path(files_dir)
        label = f"{task}/{version}"
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
        if not isinstance(data_fingerprint, str) or not data_fingerprint:
            raise RegistryError(f"{label}: data_fingerprint must be a non-empty string")
        if any(not t or t != t.strip() for t in tag_list):
            raise RegistryError(f"{label}: tags must be non-empty strings without surrounding spaces: {tag_list}")
        now = _utcnow()
        draft = {
            "task": task,
            "version": version,
            "created_at": now,
            "spec": _as_json_dict("spec", spec),
            "data_fingerprint": data_fingerprint,
            "metrics": _as_json_dict("metrics", metrics),
            "tags": tag_list,
            "libraries": library_versions(),
            "parent": parent,
            "notes": notes,
        }
        target = self._version_uri(task, version)
        if storage.exists(storage.join(target, MANIFEST_FILE), options=self.s3):
            raise VersionExists(f"{label}: version already registered at {target}")
        if storage.exists(target, options=self.s3):
            raise RegistryError(
                f"{label}: {target} holds files but no manifest (left by a failed registration?); "
                "delete that folder or choose another version"
            )
        if self.is_local:
            manifest = self._register_local(task, version, src, rels, draft)
        else:
            manifest = self._register_remote(task, version, src, rels, draft)
        return ModelVersion(**manifest.model_dump(), uri=self._version_uri(task, version), stages=[])

    def _register_local(
        self, task: str, version: str, src: Path, rels: list[str], draft: dict[str, Any]
    ) -> Manifest:
        task_dir = storage.local_path(self._task_uri(task))
        final = task_dir / version
        staging = task_dir / f".tmp-{version}-{secrets.token_hex(4)}"
        try:
            storage.copy_tree(src, staging)
            storage.write_json(staging / METRICS_FILE, draft["metrics"])
            files = {rel: storage.sha256_file(staging / rel) for rel in _walk(staging)}
            manifest = Manifest(**draft, files=files)
            storage.write_json(staging / MANIFEST_FILE, manifest.model_dump(mode="json"))
            try:
                os.rename(staging, final)  # the commit: the folder appears whole or not at all
            except OSError as exc:
                if final.exists():
                    raise VersionExists(f"{task}/{version}: version already registered at {final}") from exc
                raise
            with contextlib.suppress(OSError):
                dir_fd = os.open(task_dir, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return manifest

    def _register_remote(
        self, task: str, version: str, src: Path, rels: list[str], draft: dict[str, Any]
    ) -> Manifest:
        target = self._version_uri(task, version)
        try:
            # Hash the local files, upload them, then write the manifest: its presence commits.
            files = {rel: storage.sha256_file(src / rel) for rel in rels}
            storage.copy_tree(src, target, options=self.s3)
            files[METRICS_FILE] = storage.write_json(
                storage.join(target, METRICS_FILE), draft["metrics"], options=self.s3
            )
            manifest = Manifest(**draft, files=dict(sorted(files.items())))
            storage.write_json(storage.join(target, MANIFEST_FILE), manifest.model_dump(mode="json"), options=self.s3)
        except BaseException:
            with contextlib.suppress(Exception):
                storage.delete_prefix(target, options=self.s3)
            raise
        return manifest

    # ----------------------------------------------------------------- reading

    def tasks(self) -> list[str]:
        """Names of the tasks with anything under the root, sorted."""
        prefix = self.root
        names = set()
        for uri in storage.list_prefix(prefix, options=self.s3):
            first = uri[len(prefix) :].lstrip("/").split("/", 1)[0]
            if _NAME_RE.fullmatch(first):
                names.add(first)
        return sorted(names)

    def _committed(self, task: str) -> list[str]:
        """Version ids of ``task`` that have a manifest, unsorted."""
        prefix = self._task_uri(task)
        found = []
        for uri in storage.list_prefix(prefix, options=self.s3):
            parts = uri[len(prefix) :].lstrip("/").split("/")
            if len(parts) == 2 and parts[1] == MANIFEST_FILE and _NAME_RE.fullmatch(parts[0]):
                if parts[0] not in _RESERVED_VERSIONS:
                    found.append(parts[0])
        return found

    def _read_manifest(self, task: str, version: str) -> Manifest:
        uri = storage.join(self._version_uri(task, version), MANIFEST_FILE)
        try:
            raw = storage.read_json(uri, options=self.s3)
        except StorageNotFound:
            raise self._not_found(task, version) from None
        try:
            manifest = Manifest.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise RegistryError(f"{task}/{version}: {uri} is not a valid manifest ({where}: {first['msg']})") from exc
        if (manifest.task, manifest.version) != (task, version):
            raise RegistryError(
                f"{task}/{version}: {uri} is the manifest of {manifest.task}/{manifest.version}; "
                "a version folder may not be renamed or moved between tasks"
            )
        return manifest

    def _not_found(self, task: str, version: str) -> VersionNotFound:
        available = sorted(self._committed(task))
        if not available:
            return VersionNotFound(f"task {task!r} has no versions under {self.root} (asked for {version!r})")
        nearest = difflib.get_close_matches(version, available, n=3, cutoff=0.5) or available[-3:]
        return VersionNotFound(f"task {task!r} has no version {version!r}; nearest: {', '.join(nearest)}")

    def _version(self, task: str, manifest: Manifest, pointers: Mapping[str, StagePointer]) -> ModelVersion:
        held = [stage for stage, pointer in pointers.items() if pointer.version == manifest.version]
        return ModelVersion(**manifest.model_dump(), uri=self._version_uri(task, manifest.version), stages=held)

    def list(self, task: str | None = None) -> list[ModelVersion]:
        """Committed versions (those with a manifest) of ``task`` or of every task,
        sorted by task, then creation time, then id."""
        tasks = [_check_name("task", task)] if task is not None else self.tasks()
        out: list[ModelVersion] = []
        for name in tasks:
            pointers = self.stages(name)
            for version in self._committed(name):
                out.append(self._version(name, self._read_manifest(name, version), pointers))
        out.sort(key=lambda v: (v.task, v.created_at, v.version))
        return out

    def resolve(self, task: str, ref: str) -> str:
        """The version id that ``ref`` (a version id, a stage name, or ``latest``) names now."""
        _check_name("task", task)
        if ref == "latest":
            committed = self.list(task)
            if not committed:
                raise VersionNotFound(f"task {task!r} has no versions under {self.root}")
            return committed[-1].version
        if ref in STAGES:
            pointer = self.stage(task, ref)
            if pointer is None:
                raise VersionNotFound(f"stage {ref!r} of task {task!r} holds no version; promote one first")
            return pointer.version
        return _check_version(ref)

    def get(self, task: str, ref: str = "latest") -> ModelVersion:
        """The version ``ref`` names: a version id, ``staging``/``production``, or ``latest``."""
        version = self.resolve(task, ref)
        return self._version(task, self._read_manifest(task, version), self.stages(task))

    def show(self, task: str, ref: str = "latest") -> dict[str, Any]:
        """:meth:`get` as a JSON-ready dict (manifest, uri, stages), e.g. for the CLI."""
        return self.get(task, ref).model_dump(mode="json")

    # ----------------------------------------------------------------- stages

    def stage(self, task: str, stage: str) -> StagePointer | None:
        """The pointer of ``stage`` for ``task``, or None if nothing was ever promoted there."""
        _check_name("task", task)
        _check_stage(stage)
        uri = self._stage_uri(task, stage)
        try:
            raw = storage.read_json(uri, options=self.s3)
        except StorageNotFound:
            return None
        try:
            return StagePointer.model_validate(raw)
        except ValidationError as exc:
            raise RegistryError(f"{task}: stage pointer {uri} is invalid ({exc.errors()[0]['msg']})") from exc

    def stages(self, task: str) -> dict[str, StagePointer]:
        """Every stage of ``task`` that holds a version."""
        return {name: p for name in STAGES if (p := self.stage(task, name)) is not None}

    def _write_pointer(self, task: str, pointer: StagePointer) -> None:
        storage.write_json(self._stage_uri(task, pointer.stage), pointer.model_dump(mode="json"), options=self.s3)

    def promote(self, task: str, ref: str, stage: Stage) -> StagePointer:
        """Point ``stage`` at the version ``ref`` names (one atomic write); the old one goes to history.

        ``ref`` may itself be a stage: ``promote(task, "staging", "production")``.
        Promoting the version the stage already holds changes nothing.
        """
        _check_stage(stage)
        version = self.get(task, ref).version  # must be committed
        current = self.stage(task, stage)
        if current is not None and current.version == version:
            return current
        history = [*current.previous, current.version] if current is not None else []
        pointer = StagePointer(stage=stage, version=version, previous=history[-_MAX_HISTORY:], updated_at=_utcnow())
        self._write_pointer(task, pointer)
        return pointer

    def rollback(self, task: str, stage: Stage) -> StagePointer:
        """Point ``stage`` back at the version it held before (one atomic write)."""
        _check_stage(stage)
        current = self.stage(task, stage)
        if current is None:
            raise StageError(f"stage {stage!r} of task {task!r} holds no version; nothing to roll back")
        if not current.previous:
            raise StageError(
                f"stage {stage!r} of task {task!r} has no previous version to roll back to "
                f"(it holds {current.version})"
            )
        target = current.previous[-1]
        if target not in self._committed(task):
            raise StageError(
                f"stage {stage!r} of task {task!r} would roll back to {target}, which was deleted; "
                "promote a version explicitly"
            )
        pointer = StagePointer(stage=stage, version=target, previous=current.previous[:-1], updated_at=_utcnow())
        self._write_pointer(task, pointer)
        return pointer

    # ----------------------------------------------------------------- fetch and verify

    def fetch(self, task: str, ref: str = "latest", cache_dir: str | os.PathLike[str] | None = None) -> Path:
        """A local folder holding the version's files, every sha256 verified against the manifest.

        Local registry: the version folder itself. S3: a copy under the cache folder,
        downloaded once (into a temp folder, verified, renamed into place) and
        re-verified on every later fetch. Raises ChecksumMismatch on any difference.
        """
        mv = self.get(task, ref)
        if self.is_local:
            folder = storage.local_path(mv.uri)
            self.verify(folder, mv)
            return folder
        root = Path(cache_dir) if cache_dir is not None else (self.cache_dir or _default_cache_dir())
        key = hashlib.sha256(self.root.encode()).hexdigest()[:12]
        target = root / f"{self.root.removeprefix('s3://').split('/', 1)[0]}-{key}" / task / mv.version
        if target.is_dir():
            self.verify(target, mv, where="cached copy")
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".tmp-{mv.version}-{secrets.token_hex(4)}"
        try:
            storage.copy_tree(mv.uri, tmp, options=self.s3)
            self.verify(tmp, mv, where="download")
            try:
                os.rename(tmp, target)
            except OSError:
                if not target.is_dir():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # a concurrent fetch won the race
                self.verify(target, mv, where="cached copy")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    def verify(self, folder: str | os.PathLike[str], manifest: Manifest, *, where: str = "folder") -> None:
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

    # ----------------------------------------------------------------- delete

    def delete(self, task: str, version: str) -> None:
        """Remove a version; refused while a stage points at it. The manifest goes first,
        so an interrupted delete leaves an uncommitted folder, never a broken version."""
        _check_name("task", task)
        _check_version(version)
        self._read_manifest(task, version)  # VersionNotFound with the nearest ids
        holders = [s for s, p in self.stages(task).items() if p.version == version]
        if holders:
            raise StageError(
                f"refusing to delete {task}/{version}: stage {', '.join(holders)} points at it; "
                "promote another version first"
            )
        uri = self._version_uri(task, version)
        if self.is_local:
            folder = storage.local_path(uri)
            doomed = folder.parent / f".del-{version}-{secrets.token_hex(4)}"
            os.rename(folder, doomed)  # uncommit in one step
            shutil.rmtree(doomed, ignore_errors=True)
        else:
            storage.delete(storage.join(uri, MANIFEST_FILE), options=self.s3)
            storage.delete_prefix(uri, options=self.s3)
