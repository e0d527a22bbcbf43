"""Folders and prefixes: existence, listing, deletion and copying of whole trees.

A "folder" on S3 is a key prefix ending in ``/``: ``s3://b/runs/a`` holds
``runs/a/...`` but not ``runs/ab``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ecomine.storage._errors import StorageError, StorageNotFound
from ecomine.storage._local import _atomic_local, _local_call, _local_files
from ecomine.storage._options import S3Options, _client
from ecomine.storage._read_write import _CHUNK
from ecomine.storage._s3 import _NOT_FOUND_CODES, _s3_call
from ecomine.storage._uri import URI, _as_str, _parse, _S3Loc, join

__all__ = ["exists", "list_prefix", "delete", "delete_prefix", "copy_tree"]


def exists(uri: URI, *, options: S3Options | None = None) -> bool:
    """True if ``uri`` is an existing file or folder (on S3: an object, or a non-empty prefix)."""
    text = _as_str(uri)
    loc = _parse(text)
    if isinstance(loc, Path):
        return loc.exists()
    client = _client(options)
    from botocore.exceptions import ClientError

    with _s3_call(text, client):
        if loc.key and not loc.key.endswith("/"):
            try:
                client.head_object(Bucket=loc.bucket, Key=loc.key)
                return True
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) not in _NOT_FOUND_CODES:
                    raise
        try:  # not an object: maybe a folder prefix
            page = client.list_objects_v2(Bucket=loc.bucket, Prefix=loc.folder_key, MaxKeys=1)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _NOT_FOUND_CODES:
                return False
            raise
        return page.get("KeyCount", 0) > 0


def _relative_files(uri: str, options: S3Options | None) -> list[str]:
    """Relative paths of every file under the folder ``uri`` ([] when there is none)."""
    loc = _parse(uri)
    if isinstance(loc, Path):
        if not loc.is_dir():
            return []
        with _local_call(uri):
            return _local_files(loc)
    client = _client(options)
    prefix = loc.folder_key
    rels: list[str] = []
    with _s3_call(uri, client):
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=loc.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key.endswith("/"):  # folder markers some tools create
                    continue
                rels.append(key[len(prefix) :])
    return rels


def list_prefix(uri: URI, *, options: S3Options | None = None) -> list[str]:
    """Full URIs of every file under the folder ``uri``, recursive and sorted.

    ``uri`` is a folder: ``s3://b/runs/a`` lists ``runs/a/...`` but not ``runs/ab``.
    Results keep the style of ``uri`` (path, file:// or s3://). A missing folder lists as [].
    """
    text = _as_str(uri)
    return sorted(join(text, rel) for rel in _relative_files(text, options))


def delete(uri: URI, *, missing_ok: bool = False, options: S3Options | None = None) -> None:
    """Delete one file or object; StorageNotFound if it is missing (unless ``missing_ok``)."""
    text = _as_str(uri)
    loc = _parse(text)
    if isinstance(loc, Path):
        with _local_call(text):
            try:
                loc.unlink()
            except FileNotFoundError:
                if not missing_ok:
                    raise
        return
    client = _client(options)
    with _s3_call(text, client):
        if not missing_ok:
            client.head_object(Bucket=loc.bucket, Key=loc.key)
        client.delete_object(Bucket=loc.bucket, Key=loc.key)


def delete_prefix(uri: URI, *, options: S3Options | None = None) -> int:
    """Delete the folder ``uri`` and everything under it; returns how many files went (0 if none)."""
    text = _as_str(uri)
    loc = _parse(text)
    if isinstance(loc, Path):
        if not loc.exists():
            return 0
        with _local_call(text):
            if not loc.is_dir():
                raise StorageError(text, "is a file, not a folder: use delete()")
            count = len(_local_files(loc))
            shutil.rmtree(loc)
        return count
    if not loc.folder_key:
        raise StorageError(text, "refusing to delete a whole bucket; name a prefix")
    keys = [loc.folder_key + rel for rel in _relative_files(text, options)]
    client = _client(options)
    with _s3_call(text, client):
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]
            result = client.delete_objects(
                Bucket=loc.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
            )
            errors = result.get("Errors", [])
            if errors:
                first = errors[0]
                raise StorageError(
                    text, f"could not delete {len(errors)} objects, e.g. {first.get('Key')}: {first.get('Code')}"
                )
    return len(keys)


def _copy_file(src: str, dst: str, options: S3Options | None) -> None:
    src_loc, dst_loc = _parse(src), _parse(dst)
    if isinstance(src_loc, Path) and isinstance(dst_loc, Path):
        with _local_call(src), open(src_loc, "rb") as source, _local_call(dst), _atomic_local(dst_loc) as target:
            shutil.copyfileobj(source, target, _CHUNK)
    elif isinstance(src_loc, _S3Loc) and isinstance(dst_loc, Path):
        client = _client(options)
        with _local_call(dst), _atomic_local(dst_loc) as target, _s3_call(src, client):
            client.download_fileobj(src_loc.bucket, src_loc.key, target)
    elif isinstance(src_loc, Path) and isinstance(dst_loc, _S3Loc):
        if not src_loc.is_file():
            raise StorageNotFound(src, "not found (no such file)")
        client = _client(options)
        with _s3_call(dst, client):
            client.upload_file(str(src_loc), dst_loc.bucket, dst_loc.key)
    else:
        assert isinstance(src_loc, _S3Loc) and isinstance(dst_loc, _S3Loc)
        client = _client(options)
        with _s3_call(f"{src} -> {dst}", client):
            client.copy({"Bucket": src_loc.bucket, "Key": src_loc.key}, dst_loc.bucket, dst_loc.key)


def copy_tree(src_uri: URI, dst_uri: URI, *, options: S3Options | None = None) -> list[str]:
    """Copy every file under the folder ``src_uri`` to the same relative path under ``dst_uri``.

    Any direction: local or s3 on either side (e.g. fetch a model folder from S3
    into a local cache). Local targets are written atomically file by file;
    files already at the destination and not in the source are left alone.
    Returns the destination URIs, sorted. StorageNotFound if the source folder
    is missing (or, on S3, holds nothing).
    """
    src, dst = _as_str(src_uri), _as_str(dst_uri)
    src_loc = _parse(src)
    _parse(dst)
    if isinstance(src_loc, Path) and not src_loc.is_dir():
        raise StorageNotFound(src, "not found (no such folder)")
    rels = _relative_files(src, options)
    if not rels and isinstance(src_loc, _S3Loc):
        raise StorageNotFound(src, "not found (no objects under this prefix)")
    written = []
    for rel in sorted(rels):
        target = join(dst, rel)
        _copy_file(join(src, rel), target, options)
        written.append(target)
    return written
