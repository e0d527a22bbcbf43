"""The Registry: versions of every task under one root, registered, listed, staged, fetched, deleted.

Orchestrates the other registry modules (names, manifest, commit, stages) over
ecomine.storage; a local folder or an ``s3://`` prefix behind one interface.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import secrets
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ecomine import storage
from ecomine.registry._commit import commit_local, commit_remote, leftover_error
from ecomine.registry._errors import RegistryError, StageError, VersionExists, VersionNotFound
from ecomine.registry._manifest import (
    MANIFEST_FILE,
    Manifest,
    ModelVersion,
    _as_json_dict,
    library_versions,
    source_files,
    verify,
)
from ecomine.registry._names import (
    _NAME_RE,
    _RESERVED_VERSIONS,
    STAGES,
    Stage,
    _check_name,
    _check_stage,
    _check_version,
    _utcnow,
    new_version_id,
)
from ecomine.registry._stages import _STAGES_DIR, StagePointer, change_pointer, promoted, read_pointer, rolled_back
from ecomine.storage import S3Options, StorageNotFound

__all__ = ["Registry"]


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

    def _claim_uri(self, task: str, version: str) -> str:
        """S3 only: who is registering ``version`` (see ``_commit.commit_remote``)."""
        return storage.join(self.root, task, ".claims", f"{version}.json")

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
        _check_name("task", task)
        if version is not None:
            _check_version(version)
        if parent is not None:
            _check_name("parent version", parent)
        label = f"{task}/{version}" if version is not None else task
        if isinstance(tags, str):
            raise RegistryError(f"{label}: tags must be a list of strings, not the string {tags!r}")
        tag_list = [str(t) for t in tags]
        src = Path(files_dir)
        rels = source_files(src, label)
        if not isinstance(data_fingerprint, str) or not data_fingerprint:
            raise RegistryError(f"{label}: data_fingerprint must be a non-empty string")
        if any(not t or t != t.strip() for t in tag_list):
            raise RegistryError(f"{label}: tags must be non-empty strings without surrounding spaces: {tag_list}")
        draft = {
            "task": task,
            "created_at": _utcnow(),
            "spec": _as_json_dict("spec", spec),
            "data_fingerprint": data_fingerprint,
            "metrics": _as_json_dict("metrics", metrics),
            "tags": tag_list,
            "libraries": library_versions(),
            "parent": parent,
            "notes": notes,
        }
        if version is not None:
            return self._commit(task, version, src, rels, draft)
        for attempt in range(3):  # a generated id: on the rare collision, draw another
            try:
                return self._commit(task, new_version_id(), src, rels, draft)
            except VersionExists:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _commit(self, task: str, version: str, src: Path, rels: list[str], draft: dict[str, Any]) -> ModelVersion:
        """Bring the checked files of ``src`` in as ``task/version``; VersionExists if it is taken."""
        label = f"{task}/{version}"
        draft = {**draft, "version": version}
        target = self._version_uri(task, version)
        manifest_uri = storage.join(target, MANIFEST_FILE)
        # Locally a version folder appears whole (renamed in with its manifest), so one without
        # a manifest is a leftover; on S3 that is checked once the claim is held (commit_remote).
        if self.is_local and storage.exists(target) and not storage.exists(manifest_uri):
            raise leftover_error(label, target)
        if storage.exists(manifest_uri, options=self.s3):
            raise VersionExists(f"{label}: version already registered at {target}")
        if self.is_local:
            manifest = commit_local(storage.local_path(self._task_uri(task)), version, src, draft)
        else:
            manifest = commit_remote(target, self._claim_uri(task, version), src, rels, draft, self.s3)
        return ModelVersion(**manifest.model_dump(), uri=target, stages=[])

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
                raise VersionNotFound(
                    f"stage {ref!r} of task {task!r} holds no version; promote one first "
                    f"(ecomine registry promote VERSION {ref} --task {task})"
                )
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
        return read_pointer(self._stage_uri(task, stage), task=task, options=self.s3)[0]

    def stages(self, task: str) -> dict[str, StagePointer]:
        """Every stage of ``task`` that holds a version."""
        return {name: p for name in STAGES if (p := self.stage(task, name)) is not None}

    def promote(self, task: str, ref: str, stage: Stage) -> StagePointer:
        """Point ``stage`` at the version ``ref`` names (one atomic write); the old one goes to history.

        ``ref`` may itself be a stage: ``promote(task, "staging", "production")``.
        Promoting the version the stage already holds changes nothing. Safe against
        concurrent promotes and rollbacks: each lands, in some order, in the history.
        """
        _check_stage(stage)
        version = self.get(task, ref).version  # must be committed
        return change_pointer(
            self._stage_uri(task, stage), lambda current: promoted(current, stage, version),
            task=task, stage=stage, doing=f"promoting {version}", options=self.s3,
        )

    def rollback(self, task: str, stage: Stage) -> StagePointer:
        """Point ``stage`` back at the version it held before (one atomic write).

        Rolls back from the version the stage holds when called: if another writer
        changes the stage meanwhile, StageError names both versions and nothing is rolled back.
        """
        _check_stage(stage)
        seen: list[str] = []

        def back(current: StagePointer | None) -> StagePointer:
            if current is not None and seen and current.version != seen[0]:
                raise StageError(
                    f"stage {stage!r} of task {task!r} changed while rolling back: it held {seen[0]}, "
                    f"another writer pointed it at {current.version}; nothing was rolled back"
                )
            if current is not None:
                seen.append(current.version)
            return rolled_back(current, task=task, stage=stage, committed=lambda: self._committed(task))

        return change_pointer(
            self._stage_uri(task, stage), back, task=task, stage=stage, doing="rolling back", options=self.s3,
        )

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
        """Check that ``folder`` holds exactly the manifest's files with the manifest's sha256 (see :func:`verify`)."""
        verify(folder, manifest, where=where)

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
            storage.delete(self._claim_uri(task, version), missing_ok=True, options=self.s3)  # if one was left
