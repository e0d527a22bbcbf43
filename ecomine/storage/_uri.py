"""URIs: a plain path, ``file://`` or ``s3://bucket/key``; parsing and joining, no I/O.

Every storage function starts by parsing its URI here into a local ``Path`` or an
``_S3Loc`` and then takes the local or the S3 branch.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ecomine.storage._errors import StorageError

__all__ = ["URI", "is_s3", "local_path", "join"]

URI = str | os.PathLike[str]
"""A plain path, a ``file://`` URI or an ``s3://bucket/key`` URI."""
_SCHEME_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


@dataclass(frozen=True)
class _S3Loc:
    bucket: str
    key: str

    @property
    def folder_key(self) -> str:
        """The key as a folder prefix: '' for the bucket root, else ending in '/'."""
        return self.key if self.key == "" or self.key.endswith("/") else self.key + "/"


def _as_str(uri: URI) -> str:
    return os.fspath(uri)


def is_s3(uri: URI) -> bool:
    """True for ``s3://...`` URIs."""
    return _as_str(uri).startswith("s3://")


def _parse(uri: URI) -> Path | _S3Loc:
    text = _as_str(uri)
    if text.startswith("s3://"):
        bucket, _, key = text[len("s3://") :].partition("/")
        if not bucket:
            raise StorageError(text, "an s3:// URI needs a bucket: s3://bucket/key")
        return _S3Loc(bucket, key)
    if text.startswith("file://"):
        rest = text[len("file://") :]
        if rest.startswith("localhost/"):
            rest = rest[len("localhost") :]
        if not rest.startswith("/"):
            raise StorageError(text, "a file:// URI needs an absolute path: file:///abs/path")
        return Path(rest)
    match = _SCHEME_RE.match(text)
    if match:
        raise StorageError(text, f"unsupported scheme {match.group(1)!r}: use a path, file:// or s3://")
    if not text:
        raise StorageError(text, "empty path")
    return Path(text)


def local_path(uri: URI) -> Path:
    """The local path of a plain path or ``file://`` URI; StorageError for ``s3://``."""
    loc = _parse(uri)
    if isinstance(loc, _S3Loc):
        raise StorageError(_as_str(uri), "not a local path (s3:// URI)")
    return loc


def join(uri: URI, *parts: str) -> str:
    """Join path parts onto a URI with '/', keeping its style (path, file:// or s3://).

    Parts are relative: leading and trailing slashes on them are dropped.
    """
    text = _as_str(uri)
    clean = [p.strip("/") for p in parts if p.strip("/")]
    if not clean:
        return text
    if _SCHEME_RE.match(text):
        return text + ("" if text.endswith("/") else "/") + "/".join(clean)
    return os.path.join(text, *clean)
