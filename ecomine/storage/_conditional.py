"""Writes that race: create-if-absent and compare-and-swap of one small JSON file or object.

The registry's (a version's manifest is never overwritten; a stage pointer changes
only from the state it was read in). A *tag* names what was read: the ETag on S3,
the sha256 of the bytes locally.

- S3: ``If-None-Match: *`` and ``If-Match: <ETag>`` on PutObject (AWS since 2024;
  moto's server too). A refused write answers 412, or 409 when a concurrent
  conditional write is in flight; both are StorageConflict.
- Local: create links a finished temp file into place (``os.link`` refuses an
  existing name); swap holds an ``fcntl.flock`` on ``.<name>.ecomine-lock`` beside
  the file while it compares the current bytes and ``os.replace``s the new ones in.
  Readers take no lock: they see the old bytes or the new ones.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from pathlib import Path
from typing import Any

from ecomine.storage._errors import StorageConflict, StorageCorrupt, StorageNotFound
from ecomine.storage._local import _atomic_local, _local_call
from ecomine.storage._options import S3Options, _client
from ecomine.storage._read_write import _json_bytes
from ecomine.storage._s3 import _s3_call
from ecomine.storage._uri import URI, _as_str, _parse

__all__ = ["read_json_tagged", "create_json", "swap_json"]


def read_json_tagged(uri: URI, *, options: S3Options | None = None) -> tuple[Any, str]:
    """The JSON at ``uri`` and its tag, for a later :func:`swap_json`; StorageNotFound if absent."""
    text = _as_str(uri)
    loc = _parse(text)
    if isinstance(loc, Path):
        with _local_call(text):
            data = loc.read_bytes()
        tag = hashlib.sha256(data).hexdigest()
    else:
        client = _client(options)
        with _s3_call(text, client):
            answer = client.get_object(Bucket=loc.bucket, Key=loc.key)
            data, tag = answer["Body"].read(), answer["ETag"]
    try:
        return json.loads(data.decode("utf-8")), tag
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StorageCorrupt(text, f"not valid JSON ({exc})") from exc


def create_json(uri: URI, obj: Any, *, options: S3Options | None = None) -> str:
    """Write ``obj`` as JSON only if nothing is at ``uri`` yet (StorageConflict otherwise); returns the sha256 hex."""
    text = _as_str(uri)
    return _put(text, _json_bytes(text, obj), None, options)


def swap_json(uri: URI, obj: Any, *, expected: str | None, options: S3Options | None = None) -> str:
    """Write ``obj`` as JSON only if ``uri`` still holds what was read with tag ``expected``
    (None: only if it is still absent). StorageConflict when it changed; returns the sha256 hex."""
    text = _as_str(uri)
    data = _json_bytes(text, obj)
    if expected is None:
        return _put(text, data, None, options)
    loc = _parse(text)
    if isinstance(loc, Path):
        lock = loc.parent / f".{loc.name}.ecomine-lock"
        with _local_call(text), open(lock, "ab") as held:
            fcntl.flock(held, fcntl.LOCK_EX)  # released when the file closes
            try:
                current: str | None = hashlib.sha256(loc.read_bytes()).hexdigest()
            except FileNotFoundError:
                current = None
            if current != expected:
                raise StorageConflict(text, f"changed since it was read (sha256 {expected[:12]}..., now {_short(current)})")
            with _atomic_local(loc) as handle:
                handle.write(data)
        return hashlib.sha256(data).hexdigest()
    try:
        return _put(text, data, expected, options)
    except StorageNotFound as exc:  # If-Match on a key deleted since it was read
        raise StorageConflict(text, "deleted since it was read") from exc


def _put(text: str, data: bytes, if_match: str | None, options: S3Options | None) -> str:
    """One conditional write: If-Match ``if_match``, or create-if-absent when None."""
    loc = _parse(text)
    if isinstance(loc, Path):
        with _local_call(text), _atomic_local(loc, exclusive=True) as handle:
            handle.write(data)
    else:
        client = _client(options)
        condition = {"IfMatch": if_match} if if_match is not None else {"IfNoneMatch": "*"}
        with _s3_call(text, client):
            client.put_object(Bucket=loc.bucket, Key=loc.key, Body=data, **condition)
    return hashlib.sha256(data).hexdigest()


def _short(tag: str | None) -> str:
    return "absent" if tag is None else f"{tag[:12]}..."
