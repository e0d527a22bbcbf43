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
    └── StorageCorrupt                the bytes are there but do not parse (JSON, parquet)
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "URI",
    "S3Options",
    "StorageError",
    "StorageNotFound",
    "StorageAccessDenied",
    "StorageUnreachable",
    "StorageCorrupt",
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
]

URI = str | os.PathLike[str]
"""A plain path, a ``file://`` URI or an ``s3://bucket/key`` URI."""

_CHUNK = 1 << 20
_SCHEME_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
# Temp files of atomic local writes: ".<name>.<hex>.tmp" beside the target; hidden from list_prefix.
_TMP_RE = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")


# --------------------------------------------------------------------------- errors


class StorageError(Exception):
    """Storage could not do what was asked; the message names the URI and the cause."""

    def __init__(self, uri: str, cause: str) -> None:
        self.uri = uri
        self.cause = " ".join(str(cause).split())  # always one line
        super().__init__(f"{uri}: {self.cause}")

    def __str__(self) -> str:  # OSError subclasses would otherwise format their own way
        return f"{self.uri}: {self.cause}"

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across Ray workers
        return (type(self), (self.uri, self.cause))


class StorageNotFound(StorageError, FileNotFoundError):
    """The file, key, bucket or folder does not exist."""


class StorageAccessDenied(StorageError, PermissionError):
    """Permissions or credentials were refused."""


class StorageUnreachable(StorageError):
    """The S3 endpoint could not be reached (connection refused, timed out, DNS)."""


class StorageCorrupt(StorageError):
    """The object exists but its content does not parse as the expected format."""


# --------------------------------------------------------------------------- S3 options


class S3Options(BaseModel):
    """How to reach S3. Unset fields fall back to the standard AWS environment variables.

    ``endpoint_url`` falls back to ``AWS_ENDPOINT_URL_S3`` then ``AWS_ENDPOINT_URL``
    (read when a client is first needed, never at import). Timeouts are short and
    retries few so that an unreachable endpoint fails within a couple of seconds.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = Field(default=None, repr=False)
    session_token: str | None = Field(default=None, repr=False)
    connect_timeout: float = Field(default=2.0, gt=0)
    read_timeout: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=2, ge=1, description="total attempts per request, first included")
    addressing_style: Literal["auto", "path", "virtual"] = "auto"

    def resolved(self) -> S3Options:
        """These options with unset fields filled from the environment, as of now."""
        env = os.environ
        return self.model_copy(
            update={
                "endpoint_url": self.endpoint_url
                or env.get("AWS_ENDPOINT_URL_S3")
                or env.get("AWS_ENDPOINT_URL")
                or None,
                "region": self.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
                "access_key_id": self.access_key_id or env.get("AWS_ACCESS_KEY_ID") or None,
                "secret_access_key": self.secret_access_key or env.get("AWS_SECRET_ACCESS_KEY") or None,
                "session_token": self.session_token or env.get("AWS_SESSION_TOKEN") or None,
            }
        )


_CLIENTS: dict[tuple[int, S3Options], Any] = {}
_CLIENTS_LOCK = threading.Lock()


def _client(options: S3Options | None) -> Any:
    """One cached boto3 S3 client per (process, resolved options); created on first use.

    boto3 is imported here, not at module import: local-only users never pay for it.
    """
    resolved = (options or S3Options()).resolved()
    key = (os.getpid(), resolved)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            import boto3
            from botocore.config import Config

            session = boto3.session.Session(
                aws_access_key_id=resolved.access_key_id,
                aws_secret_access_key=resolved.secret_access_key,
                aws_session_token=resolved.session_token,
                region_name=resolved.region,
            )
            client = session.client(
                "s3",
                endpoint_url=resolved.endpoint_url,
                config=Config(
                    connect_timeout=resolved.connect_timeout,
                    read_timeout=resolved.read_timeout,
                    retries={"total_max_attempts": resolved.max_attempts, "mode": "standard"},
                    s3={"addressing_style": resolved.addressing_style},
                ),
            )
            _CLIENTS[key] = client
    return client


# --------------------------------------------------------------------------- URI parsing


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


# --------------------------------------------------------------------------- error mapping


def _local_error(uri: str, exc: OSError) -> StorageError:
    cause = exc.strerror or str(exc)
    if isinstance(exc, FileNotFoundError):
        return StorageNotFound(uri, f"not found ({cause})")
    if isinstance(exc, PermissionError):
        return StorageAccessDenied(uri, f"access denied ({cause})")
    if isinstance(exc, IsADirectoryError):
        return StorageError(uri, "is a folder, not a file")
    return StorageError(uri, f"{type(exc).__name__}: {cause}")


_NOT_FOUND_CODES = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}
_DENIED_CODES = {
    "AccessDenied",
    "403",
    "Forbidden",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AllAccessDisabled",
    "ExpiredToken",
    "InvalidToken",
}


def _s3_error(uri: str, exc: Exception, client: Any) -> StorageError | None:
    """Map a botocore/s3transfer exception onto the StorageError family (None: not ours)."""
    from botocore import exceptions as be

    endpoint = getattr(getattr(client, "meta", None), "endpoint_url", None) or "default AWS endpoint"
    if isinstance(exc, be.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = error.get("Message") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
        if code in _NOT_FOUND_CODES:
            what = "bucket not found" if code == "NoSuchBucket" else "not found"
            return StorageNotFound(uri, f"{what} ({code}: {message})")
        if code in _DENIED_CODES:
            return StorageAccessDenied(uri, f"access denied ({code}: {message})")
        return StorageError(uri, f"S3 error {code}: {message}")
    if isinstance(exc, be.NoCredentialsError | be.PartialCredentialsError):
        return StorageAccessDenied(uri, f"no usable AWS credentials ({exc})")
    if isinstance(exc, be.ConnectionError):  # EndpointConnectionError, ConnectTimeoutError, proxy errors
        return StorageUnreachable(uri, f"cannot reach S3 endpoint {endpoint} ({type(exc).__name__}: {exc})")
    if isinstance(exc, be.ReadTimeoutError):
        return StorageUnreachable(uri, f"S3 endpoint {endpoint} timed out reading ({exc})")
    if isinstance(exc, be.BotoCoreError):
        return StorageError(uri, f"S3 error via {endpoint}: {type(exc).__name__}: {exc}")
    return None


@contextlib.contextmanager
def _s3_call(uri: str, client: Any) -> Iterator[None]:
    try:
        yield
    except StorageError:
        raise
    except Exception as exc:
        mapped = _s3_error(uri, exc, client)
        if mapped is None:
            raise
        raise mapped from exc


@contextlib.contextmanager
def _local_call(uri: str) -> Iterator[None]:
    try:
        yield
    except StorageError:
        raise
    except OSError as exc:
        raise _local_error(uri, exc) from exc


# --------------------------------------------------------------------------- local atomic writes


@contextlib.contextmanager
def _atomic_local(path: Path) -> Iterator[IO[bytes]]:
    """Yield a file that becomes ``path`` only if the block finishes; else nothing is left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    # os.open with 0o666 lets the umask decide permissions, like a plain open() would.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable; best effort
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


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
    try:
        content = json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise StorageError(text, f"cannot encode as JSON ({exc})") from exc
    return write_text(text, content, options=options)


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


# --------------------------------------------------------------------------- listing, existence, deletion


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


def _local_files(root: Path) -> list[str]:
    """Relative POSIX paths of the files under ``root`` (recursive), temp files excluded."""
    out: list[str] = []
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            if _TMP_RE.match(name):
                continue
            out.append(Path(dirpath, name).relative_to(root).as_posix())
    return out


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


# --------------------------------------------------------------------------- hashing and copying


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
