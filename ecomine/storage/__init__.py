"""Read and write by URI: plain paths, ``file://`` URIs and ``s3://bucket/key``.

Shared by every layer (data readers, train checkpoints, the registry, serve):
nothing else in ecomine opens files or talks to S3 directly. Local writes are
atomic (temp file in the same folder, fsync, ``os.replace``); S3 goes through
one lazily created boto3 client per :class:`S3Options`.

Exceptions, all carrying ``.uri`` and a one-line message naming the URI and the cause::

    StorageError                      anything storage could not do
    ├── StorageNotFound               missing file, key, bucket or folder (also a FileNotFoundError)
    ├── StorageAccessDenied           permissions / credentials refused (also a PermissionError)
    ├── StorageUnreachable            the S3 endpoint cannot be reached (message names the endpoint)
    ├── StorageCorrupt                the bytes are there but do not parse (JSON, parquet)
    └── StorageConflict               a conditional write lost: the object exists, or changed since read

Modules (each imported from here; import ``ecomine.storage``, not them)::

    _errors      the exception family above
    _options     S3Options and the cached boto3 clients
    _uri         URI parsing and joining (no I/O)
    _local       local OSError mapping, atomic writes, file walks
    _s3          botocore errors mapped onto the family
    _read_write  one file or object: bytes, text, JSON, parquet, sha256
    _trees       folders and prefixes: exists, list, delete, copy
    _conditional writes that race: create-if-absent, compare-and-swap (the registry's)
"""

from ecomine.storage._conditional import create_json, read_json_tagged, swap_json
from ecomine.storage._errors import (
    StorageAccessDenied,
    StorageConflict,
    StorageCorrupt,
    StorageError,
    StorageNotFound,
    StorageUnreachable,
)
from ecomine.storage._options import S3Options
from ecomine.storage._read_write import (
    open_write,
    read_bytes,
    read_json,
    read_parquet,
    read_text,
    sha256_file,
    write_bytes,
    write_json,
    write_parquet,
    write_text,
)
from ecomine.storage._trees import copy_tree, delete, delete_prefix, exists, list_prefix
from ecomine.storage._uri import URI, is_s3, join, local_path

__all__ = [
    "URI",
    "S3Options",
    "StorageError",
    "StorageNotFound",
    "StorageAccessDenied",
    "StorageUnreachable",
    "StorageCorrupt",
    "StorageConflict",
    "is_s3",
    "local_path",
    "join",
    "exists",
    "read_bytes",
    "write_bytes",
    "open_write",
    "read_text",
    "write_text",
    "read_json",
    "write_json",
    "read_parquet",
    "write_parquet",
    "list_prefix",
    "delete",
    "delete_prefix",
    "sha256_file",
    "copy_tree",
    "read_json_tagged",
    "create_json",
    "swap_json",
]
