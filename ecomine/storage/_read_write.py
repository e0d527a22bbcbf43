"""One file or object at a time: bytes, text, JSON and parquet in and out, sha256 of one file.

Local writes are atomic (``_local._atomic_local``); an S3 write is one PUT (or one
multipart upload for ``open_write``), so the object appears whole or not at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal

import polars as pl

from ecomine.storage._errors import StorageCorrupt, StorageError, StorageNotFound
from ecomine.storage._local import _atomic_local, _local_call, _local_error
from ecomine.storage._options import S3Options, _client
from ecomine.storage._s3 import _s3_call
from ecomine.storage._uri import URI, _as_str, _parse

__all__ = [
    "open_write", "read_bytes", "write_bytes", "read_text", "write_text",
    "read_json", "write_json", "read_parquet", "write_parquet", "sha256_file",
]

_CHUNK = 1 << 20


@contextlib.contextmanager
def open_write(uri: URI, *, options: S3Options | None = None) -> Iterator[IO[bytes]]:
    """Stream bytes to ``uri``; the object appears only if the block completes.

    Local: a temp file beside the target, fsynced and renamed into place.
    S3: spooled to memory/disk and uploaded in one (multipart if large) upload on exit.
    """
    text = _as_str(uri)
    loc = _parse(text)
    if isinstance(loc, Path):
        with _local_call(text), _atomic_local(loc) as handle:
            yield handle
        return
    client = _client(options)
    with tempfile.SpooledTemporaryFile(max_size=64 * _CHUNK) as spool:
        yield spool  # type: ignore[misc]
        spool.seek(0)
        with _s3_call(text, client):
            client.upload_fileobj(spool, loc.bucket, loc.key)


# --------------------------------------------------------------------------- bytes, text, JSON


def read_bytes(uri: URI, *, options: S3Options | None = None) -> bytes:
    """The whole content of a file or S3 object."""
    text = _as_str(uri)
    loc = _parse(text)
    if isinstance(loc, Path):
        with _local_call(text):
            return loc.read_bytes()
    client = _client(options)
    with _s3_call(text, client):
        return client.get_object(Bucket=loc.bucket, Key=loc.key)["Body"].read()


def write_bytes(uri: URI, data: bytes | bytearray | memoryview, *, options: S3Options | None = None) -> str:
    """Write ``data`` to ``uri`` (atomic locally; one PUT on S3); returns its sha256 hex."""
    text = _as_str(uri)
    loc = _parse(text)
    payload = bytes(data)
    digest = hashlib.sha256(payload).hexdigest()
    if isinstance(loc, Path):
        with _local_call(text), _atomic_local(loc) as handle:
            handle.write(payload)
        return digest
    client = _client(options)
    with _s3_call(text, client):
        client.put_object(Bucket=loc.bucket, Key=loc.key, Body=payload)
    return digest


def read_text(uri: URI, *, encoding: str = "utf-8", options: S3Options | None = None) -> str:
    text = _as_str(uri)
    data = read_bytes(text, options=options)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise StorageCorrupt(text, f"not valid {encoding} text ({exc})") from exc


def write_text(uri: URI, text: str, *, encoding: str = "utf-8", options: S3Options | None = None) -> str:
    """Write ``text`` encoded with ``encoding``; returns the sha256 hex of the bytes written."""
    return write_bytes(uri, text.encode(encoding), options=options)


def read_json(uri: URI, *, options: S3Options | None = None) -> Any:
    text = _as_str(uri)
    content = read_text(text, options=options)
    try:
        return json.loads(content)
    except json.JSONDecodeError as exc:
        raise StorageCorrupt(text, f"not valid JSON ({exc})") from exc


def write_json(uri: URI, obj: Any, *, options: S3Options | None = None) -> str:
    """Write ``obj`` as JSON (sorted keys, indent 2, trailing newline); returns the sha256 hex."""
    text = _as_str(uri)
    return write_bytes(text, _json_bytes(text, obj), options=options)


def _json_bytes(uri: str, obj: Any) -> bytes:
    """``obj`` as the JSON every storage writer produces: sorted keys, indent 2, trailing newline, UTF-8."""
    try:
        return (json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise StorageError(uri, f"cannot encode as JSON ({exc})") from exc


# --------------------------------------------------------------------------- parquet


def read_parquet(uri: URI, *, columns: list[str] | None = None, options: S3Options | None = None) -> pl.DataFrame:
    """A parquet file as a polars DataFrame (S3: fetched whole into memory first)."""
    text = _as_str(uri)
    loc = _parse(text)
    if isinstance(loc, Path):
        if not loc.exists():
            raise StorageNotFound(text, "not found (no such file)")
        if loc.is_dir():
            raise StorageError(text, "is a folder, not a file")
        source: Path | io.BytesIO = loc
    else:
        source = io.BytesIO(read_bytes(text, options=options))
    try:
        return pl.read_parquet(source, columns=columns)
    except OSError as exc:
        raise _local_error(text, exc) from exc
    except (pl.exceptions.PolarsError, ValueError) as exc:
        if isinstance(exc, pl.exceptions.ColumnNotFoundError):
            raise StorageError(text, f"column not in parquet file ({exc})") from exc
        raise StorageCorrupt(text, f"not a valid parquet file ({type(exc).__name__}: {exc})") from exc


def write_parquet(
    uri: URI, df: pl.DataFrame, *, compression: Literal["zstd", "snappy", "lz4", "gzip", "uncompressed"] = "zstd",
    options: S3Options | None = None,
) -> str:
    """Write ``df`` as parquet (serialised in memory, then one atomic write); returns the sha256 hex."""
    buffer = io.BytesIO()
    df.write_parquet(buffer, compression=compression)
    return write_bytes(uri, buffer.getbuffer(), options=options)


def sha256_file(uri: URI, *, options: S3Options | None = None) -> str:
    """The sha256 hex of a file or S3 object, streamed in 1 MiB chunks."""
    text = _as_str(uri)
    loc = _parse(text)
    digest = hashlib.sha256()
    if isinstance(loc, Path):
        with _local_call(text), open(loc, "rb") as handle:
            for chunk in iter(lambda: handle.read(_CHUNK), b""):
                digest.update(chunk)
        return digest.hexdigest()
    client = _client(options)
    with _s3_call(text, client):
        body = client.get_object(Bucket=loc.bucket, Key=loc.key)["Body"]
        for chunk in body.iter_chunks(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
