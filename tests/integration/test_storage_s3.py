"""ecomine.storage against moto's real HTTP S3 server on 127.0.0.1 (fixtures: s3_fixtures.py)."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import polars as pl
import pytest

from ecomine import storage
from ecomine.storage import (
    S3Options,
    StorageConflict,
    StorageCorrupt,
    StorageError,
    StorageNotFound,
    StorageUnreachable,
)
from tests.integration.s3_fixtures import S3_BUCKET

pytestmark = pytest.mark.integration


def test_bytes_text_json_round_trip(s3_prefix: str) -> None:
    data = os.urandom(5000)
    uri = storage.join(s3_prefix, "a", "blob.bin")
    assert storage.write_bytes(uri, data) == hashlib.sha256(data).hexdigest()
    assert storage.read_bytes(uri) == data
    assert storage.sha256_file(uri) == hashlib.sha256(data).hexdigest()

    storage.write_text(storage.join(s3_prefix, "t.txt"), "héllo")
    assert storage.read_text(storage.join(s3_prefix, "t.txt")) == "héllo"

    obj = {"z": 1, "a": [1, 2, {"k": None}]}
    storage.write_json(storage.join(s3_prefix, "o.json"), obj)
    assert storage.read_json(storage.join(s3_prefix, "o.json")) == obj
    assert storage.read_text(storage.join(s3_prefix, "o.json")).startswith('{\n  "a"')


def test_parquet_round_trip(s3_prefix: str) -> None:
    df = pl.DataFrame({"item_id": ["i1", "i2"], "price": [9.5, 1.25], "quantity": [1, 3]})
    uri = storage.join(s3_prefix, "events.parquet")
    digest = storage.write_parquet(uri, df)
    assert storage.sha256_file(uri) == digest
    assert storage.read_parquet(uri).equals(df)
    assert storage.read_parquet(uri, columns=["price"]).to_series().to_list() == [9.5, 1.25]


def test_exists_list_delete(s3_prefix: str) -> None:
    for rel in ["b.txt", "a/2.txt", "a/1.txt"]:
        storage.write_text(storage.join(s3_prefix, "run", rel), rel)
    storage.write_text(storage.join(s3_prefix, "runner", "x.txt"), "sibling prefix, not under run/")

    assert storage.exists(storage.join(s3_prefix, "run", "b.txt"))
    assert storage.exists(storage.join(s3_prefix, "run"))  # a folder prefix
    assert storage.exists(storage.join(s3_prefix, "run", "a"))
    assert not storage.exists(storage.join(s3_prefix, "run", "c.txt"))
    assert not storage.exists(f"s3://no-such-bucket-{os.getpid()}/x")

    listed = storage.list_prefix(storage.join(s3_prefix, "run"))
    assert listed == [storage.join(s3_prefix, "run", r) for r in ["a/1.txt", "a/2.txt", "b.txt"]]
    assert storage.list_prefix(storage.join(s3_prefix, "nothing")) == []

    storage.delete(storage.join(s3_prefix, "run", "b.txt"))
    assert not storage.exists(storage.join(s3_prefix, "run", "b.txt"))
    with pytest.raises(StorageNotFound, match="b.txt"):
        storage.delete(storage.join(s3_prefix, "run", "b.txt"))
    storage.delete(storage.join(s3_prefix, "run", "b.txt"), missing_ok=True)

    assert storage.delete_prefix(storage.join(s3_prefix, "run")) == 2
    assert storage.list_prefix(storage.join(s3_prefix, "run")) == []
    assert storage.exists(storage.join(s3_prefix, "runner", "x.txt"))  # the sibling survived
    with pytest.raises(StorageError, match="whole bucket"):
        storage.delete_prefix(f"s3://{S3_BUCKET}")


def test_copy_tree_local_to_s3_to_local_and_s3_to_s3(s3_prefix: str, tmp_path: Path) -> None:
    src = tmp_path / "model"
    (src / "tok").mkdir(parents=True)
    (src / "model.safetensors").write_bytes(os.urandom(2048))
    (src / "tok" / "vocab.txt").write_text("a\nb\n")

    up = storage.copy_tree(src, storage.join(s3_prefix, "m"))
    assert up == [storage.join(s3_prefix, "m", r) for r in ["model.safetensors", "tok/vocab.txt"]]
    storage.copy_tree(storage.join(s3_prefix, "m"), storage.join(s3_prefix, "m2"))
    down = storage.copy_tree(storage.join(s3_prefix, "m2"), tmp_path / "cache")
    assert down == [str(tmp_path / "cache" / "model.safetensors"), str(tmp_path / "cache" / "tok" / "vocab.txt")]
    for rel in ["model.safetensors", "tok/vocab.txt"]:
        assert (tmp_path / "cache" / rel).read_bytes() == (src / rel).read_bytes()
    with pytest.raises(StorageNotFound, match="no objects under this prefix"):
        storage.copy_tree(storage.join(s3_prefix, "none"), tmp_path / "x")


def test_open_write_uploads_only_on_success(s3_prefix: str) -> None:
    uri = storage.join(s3_prefix, "stream.bin")
    with pytest.raises(RuntimeError):
        with storage.open_write(uri) as handle:
            handle.write(b"partial")
            raise RuntimeError("midway")
    assert not storage.exists(uri)
    with storage.open_write(uri) as handle:
        handle.write(b"whole")
    assert storage.read_bytes(uri) == b"whole"


def test_missing_key_and_bucket_are_not_found(s3_prefix: str) -> None:
    missing = storage.join(s3_prefix, "nope.bin")
    for call in (storage.read_bytes, storage.read_json, storage.read_parquet, storage.sha256_file):
        with pytest.raises(StorageNotFound, match="nope.bin: not found") as info:
            call(missing)
        assert "\n" not in str(info.value)
    with pytest.raises(StorageNotFound, match="bucket not found"):
        storage.read_bytes(f"s3://no-such-bucket-{os.getpid()}/k")


def test_garbage_parquet_on_s3(s3_prefix: str) -> None:
    uri = storage.join(s3_prefix, "bad.parquet")
    storage.write_bytes(uri, b"not parquet")
    with pytest.raises(StorageCorrupt, match=r"bad\.parquet: not a valid parquet file"):
        storage.read_parquet(uri)


def test_explicit_options_reach_the_same_server(s3_server: str, s3_prefix: str) -> None:
    options = S3Options(endpoint_url=s3_server, region="us-east-1", access_key_id="testing", secret_access_key="testing")
    uri = storage.join(s3_prefix, "explicit.txt")
    storage.write_text(uri, "ok", options=options)
    assert storage.read_text(uri) == "ok"  # and via the env defaults


def test_conditional_writes_on_the_s3_server(s3_prefix: str) -> None:
    """If-None-Match: * and If-Match: <ETag> as moto's server (and S3 since 2024) enforce them."""
    manifest = storage.join(s3_prefix, "v1", "manifest.json")
    storage.create_json(manifest, {"v": 1})
    with pytest.raises(StorageConflict, match=r"manifest\.json: conditional write refused \(PreconditionFailed"):
        storage.create_json(manifest, {"v": 2})
    assert storage.read_json(manifest) == {"v": 1}

    pointer = storage.join(s3_prefix, "stages", "production.json")
    storage.swap_json(pointer, {"v": 1}, expected=None)
    _, etag = storage.read_json_tagged(pointer)
    assert etag.startswith('"') and etag.endswith('"')  # an S3 ETag, not a local sha256
    storage.swap_json(pointer, {"v": 2}, expected=etag)
    with pytest.raises(StorageConflict, match="PreconditionFailed"):
        storage.swap_json(pointer, {"v": 3}, expected=etag)  # stale
    assert storage.read_json(pointer) == {"v": 2}
    _, current = storage.read_json_tagged(pointer)
    storage.delete(pointer)
    with pytest.raises(StorageConflict, match="deleted since it was read"):
        storage.swap_json(pointer, {"v": 3}, expected=current)
    assert not storage.exists(pointer)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again on exit: nothing listens there


def test_unreachable_endpoint_fails_naming_the_endpoint(s3_server: str) -> None:
    """s3_server only provides credentials (signing comes before connecting); the endpoint is a closed port."""
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    options = S3Options(endpoint_url=endpoint)
    for call in (
        lambda: storage.read_bytes("s3://bucket/key", options=options),
        lambda: storage.write_bytes("s3://bucket/key", b"x", options=options),
        lambda: storage.list_prefix("s3://bucket/pre", options=options),
    ):
        with pytest.raises(StorageUnreachable) as info:  # how fast is a benchmark's question, not a test's
            call()
        message = str(info.value)
        assert f"cannot reach S3 endpoint {endpoint}" in message and "s3://bucket/" in message
        assert "\n" not in message
