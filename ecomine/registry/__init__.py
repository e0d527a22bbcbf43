"""Model versions and stages: one folder per version, sealed by a sha256 manifest.

Sits after train and before serve: train (and tuning) register versions here;
serve fetches them by id, by stage (``staging``/``production``) or as ``latest``.
The root is a local folder or an ``s3://`` prefix; all I/O goes through ecomine.storage.

Layout::

    <root>/<task>/<version>/            weights (*.safetensors), config.json, vocabularies,
                                        metrics.json, extra files, manifest.json (written last)
    <root>/<task>/stages/<stage>.json   {"version", "previous": [older, ..., newest], "updated_at"}
    <root>/<task>/.claims/<version>.json  S3 only: held while a writer registers that version

A version exists once its ``manifest.json`` does: locally the folder is staged
in ``<root>/<task>/.tmp-*`` and renamed into place; on S3 the manifest is the
last object written, created only if absent (``If-None-Match: *``), after the writer
has claimed the version the same way. Stage pointers change with one atomic
compare-and-swap (S3 ``If-Match`` on the ETag; locally a locked compare-then-replace),
so concurrent promotes and rollbacks never lose one another's history.

Exceptions::

    RegistryError                 anything the registry refuses; names task, version, file
    ├── InvalidName               a task, version or stage name that is not allowed (also ValueError)
    ├── VersionNotFound           unknown task/version (lists the nearest), empty stage, nothing registered
    ├── VersionExists             registering a version id that is taken (or being registered by another writer)
    ├── StageError                rollback with no history, delete of a version a stage points at,
    │                             a promote/rollback that kept losing the race to other writers
    └── ChecksumMismatch          a file differs from, is missing from, or is not in the manifest
    ecomine.storage.StorageError  passes through unchanged (unreachable S3, access denied, ...)

Modules (import ``ecomine.registry``, not them)::

    _errors     the exception family above
    _names      task/version/stage names, new version ids
    _manifest   Manifest, ModelVersion, what a version may hold, verify()
    _commit     a version's files in, whole or not at all (local rename, S3 manifest last)
    _stages     stage pointers and their history
    _registry   Registry: the operations over those, on a folder or s3://
    _ensemble   an ensemble version: its members pinned by version and content digest (ensemble.json)
"""

from ecomine.registry._ensemble import (
    ENSEMBLE_FILE,
    EnsembleManifest,
    PinnedMember,
    content_digest,
    is_ensemble,
    pinned_members,
    read_ensemble,
    write_ensemble,
)
from ecomine.registry._errors import (
    ChecksumMismatch,
    InvalidName,
    RegistryError,
    StageError,
    VersionExists,
    VersionNotFound,
)
from ecomine.registry._manifest import MANIFEST_FILE, METRICS_FILE, Manifest, ModelVersion, library_versions
from ecomine.registry._names import NAME_PATTERN, STAGES, Stage, new_version_id
from ecomine.registry._registry import Registry
from ecomine.registry._stages import StagePointer

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
    "ENSEMBLE_FILE",
    "PinnedMember",
    "EnsembleManifest",
    "content_digest",
    "read_ensemble",
    "write_ensemble",
    "pinned_members",
    "is_ensemble",
]
