"""ecomine.storage on local paths and file:// URIs (S3 lives in tests/integration/test_storage_s3.py)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import threading
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
)
from ecomine.storage._s3 import _s3_error
from tests.package_exports import module_exports


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture(params=["path", "file_uri"])
def base(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same temp folder as a plain path and as a file:// URI."""
    return str(tmp_path) if request.param == "path" else "file://" + str(tmp_path)


def test_bytes_round_trip_returns_sha256_of_what_was_written(base: str, tmp_path: Path) -> None:
    data = os.urandom(3000)
    uri = storage.join(base, "deep", "er", "blob.bin")  # parents are created
    digest = storage.write_bytes(uri, data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert storage.read_bytes(uri) == data
    assert (tmp_path / "deep" / "er" / "blob.bin").read_bytes() == data
    assert storage.sha256_file(uri) == digest
    assert storage.exists(uri) and storage.exists(storage.join(base, "deep"))
    assert not storage.exists(storage.join(base, "nope"))


def test_text_and_json_round_trip(base: str, tmp_path: Path) -> None:
    storage.write_text(storage.join(base, "a.txt"), "héllo\n")
    assert storage.read_text(storage.join(base, "a.txt")) == "héllo\n"

    obj = {"b": [1, 2.5, None], "a": {"z": True, "y": "ü"}}
    digest = storage.write_json(storage.join(base, "x.json"), obj)
    assert storage.read_json(storage.join(base, "x.json")) == obj
    raw = (tmp_path / "x.json").read_text("utf-8")
    assert raw == json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    assert raw.index('"a"') < raw.index('"b"')  # sorted keys
    assert digest == hashlib.sha256(raw.encode()).hexdigest()


def test_parquet_round_trip_keeps_dtypes(base: str) -> None:
    df = pl.DataFrame(
        {
            "user_id": ["u1", "u2", None],
            "quantity": [1, 2, 3],
            "price": [1.5, 2.0, 0.0],
            "ts": pl.Series([0, 1, 2]).cast(pl.Datetime("us", "UTC")),
        }
    )
    uri = storage.join(base, "events.parquet")
    digest = storage.write_parquet(uri, df)
    assert digest == storage.sha256_file(uri)
    assert storage.read_parquet(uri).equals(df)
    assert storage.read_parquet(uri, columns=["price"]).columns == ["price"]


def test_path_objects_are_accepted(tmp_path: Path) -> None:
    target = tmp_path / "p.bin"
    storage.write_bytes(target, b"abc")
    assert storage.read_bytes(target) == b"abc"
    assert storage.local_path(target) == target


def test_failed_stream_write_leaves_no_file_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "model.safetensors"
    with pytest.raises(RuntimeError, match="midway"):
        with storage.open_write(target) as handle:
            handle.write(b"x" * 100_000)
            raise RuntimeError("midway")
    assert not target.exists()
    assert _leftovers(target.parent) == []


def test_failed_write_keeps_the_previous_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "config.json"
    storage.write_json(target, {"v": 1})

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(StorageError, match="config.json"):
        storage.write_json(target, {"v": 2})
    monkeypatch.undo()
    assert storage.read_json(target) == {"v": 1}
    assert _leftovers(tmp_path) == ["config.json"]


def test_failed_parquet_write_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "t.parquet"
    df = pl.DataFrame({"a": [object(), object()]}, schema={"a": pl.Object})
    with pytest.raises(Exception):
        storage.write_parquet(target, df)
    assert _leftovers(tmp_path) == []


def test_unencodable_json_names_the_uri_and_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "bad.json"
    with pytest.raises(StorageError, match=r"bad\.json.*cannot encode as JSON"):
        storage.write_json(target, {"x": {1, 2}})
    assert _leftovers(tmp_path) == []


def test_create_json_never_overwrites(base: str, tmp_path: Path) -> None:
    uri = storage.join(base, "v1", "manifest.json")
    storage.create_json(uri, {"v": 1})
    with pytest.raises(StorageConflict, match=r"manifest\.json: already exists") as info:
        storage.create_json(uri, {"v": 2})
    assert isinstance(info.value, FileExistsError)
    assert storage.read_json(uri) == {"v": 1}
    assert _leftovers(tmp_path / "v1") == ["manifest.json"]  # no temp file left by the refused write


def test_swap_json_writes_only_over_what_was_read(base: str, tmp_path: Path) -> None:
    uri = storage.join(base, "stages", "production.json")
    storage.swap_json(uri, {"v": 1}, expected=None)  # None: only while absent
    obj, tag = storage.read_json_tagged(uri)
    assert obj == {"v": 1}
    storage.swap_json(uri, {"v": 2}, expected=tag)
    with pytest.raises(StorageConflict, match="changed since it was read"):
        storage.swap_json(uri, {"v": 3}, expected=tag)  # stale: another write went in
    with pytest.raises(StorageConflict, match="already exists"):
        storage.swap_json(uri, {"v": 3}, expected=None)
    assert storage.read_json(uri) == {"v": 2}
    assert storage.list_prefix(storage.join(base, "stages")) == [uri]  # the lock file is not listed
    with pytest.raises(StorageNotFound):
        storage.read_json_tagged(storage.join(base, "stages", "staging.json"))


def test_swap_json_read_modify_write_loses_no_increment_under_threads(tmp_path: Path) -> None:
    uri = tmp_path / "counter.json"
    storage.create_json(uri, {"n": 0})

    def add(times: int) -> None:
        for _ in range(times):
            while True:
                obj, tag = storage.read_json_tagged(uri)
                try:
                    storage.swap_json(uri, {"n": obj["n"] + 1}, expected=tag)
                    break
                except StorageConflict:  # another thread's increment went in: read again
                    continue

    threads = [threading.Thread(target=add, args=(25,)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert storage.read_json(uri) == {"n": 150}


def test_list_prefix_is_recursive_sorted_full_uris_in_the_callers_style(base: str, tmp_path: Path) -> None:
    for rel in ["b.txt", "a/2.txt", "a/1.txt", "a/deeper/z.txt"]:
        storage.write_text(storage.join(base, "run", rel), rel)
    storage.write_text(storage.join(base, "runner", "other.txt"), "sibling, not under run/")
    (tmp_path / "run" / ".b.txt.0123456789ab.tmp").write_bytes(b"an in-flight atomic write")

    listed = storage.list_prefix(storage.join(base, "run"))
    expected = [storage.join(base, "run", rel) for rel in ["a/1.txt", "a/2.txt", "a/deeper/z.txt", "b.txt"]]
    assert listed == expected
    assert all(storage.read_text(u) for u in listed)
    assert storage.list_prefix(storage.join(base, "missing")) == []


def test_delete_and_delete_prefix(base: str, tmp_path: Path) -> None:
    storage.write_text(storage.join(base, "d", "x.txt"), "x")
    storage.write_text(storage.join(base, "d", "y", "z.txt"), "z")
    storage.delete(storage.join(base, "d", "x.txt"))
    assert not (tmp_path / "d" / "x.txt").exists()
    with pytest.raises(StorageNotFound, match="x.txt"):
        storage.delete(storage.join(base, "d", "x.txt"))
    storage.delete(storage.join(base, "d", "x.txt"), missing_ok=True)
    assert storage.delete_prefix(storage.join(base, "d")) == 1
    assert not (tmp_path / "d").exists()
    assert storage.delete_prefix(storage.join(base, "d")) == 0


def test_copy_tree_copies_nested_files(base: str, tmp_path: Path) -> None:
    src = storage.join(base, "src")
    storage.write_bytes(storage.join(src, "w.safetensors"), b"\x00" * 10)
    storage.write_text(storage.join(src, "tok", "vocab.txt"), "a\nb\n")
    copied = storage.copy_tree(src, storage.join(base, "dst"))
    assert copied == [storage.join(base, "dst", "tok", "vocab.txt"), storage.join(base, "dst", "w.safetensors")]
    assert (tmp_path / "dst" / "tok" / "vocab.txt").read_text() == "a\nb\n"
    assert storage.sha256_file(storage.join(base, "dst", "w.safetensors")) == hashlib.sha256(b"\x00" * 10).hexdigest()
    with pytest.raises(StorageNotFound, match="nosuch"):
        storage.copy_tree(storage.join(base, "nosuch"), storage.join(base, "dst2"))


def test_missing_file_error_names_the_uri_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "weights.safetensors"
    for call in (storage.read_bytes, storage.read_text, storage.read_json, storage.read_parquet, storage.sha256_file):
        with pytest.raises(StorageNotFound) as info:
            call(missing)
        message = str(info.value)
        assert str(missing) in message and "not found" in message and "\n" not in message
        assert isinstance(info.value, FileNotFoundError)  # callers may catch the builtin


def test_garbage_parquet_is_reported_as_not_a_valid_parquet_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"this is not parquet at all")
    with pytest.raises(StorageCorrupt, match=r"bad\.parquet: not a valid parquet file"):
        storage.read_parquet(bad)
    with pytest.raises(StorageCorrupt, match=r"bad\.parquet: not valid JSON"):
        storage.read_json(bad)


def test_uri_parsing_and_join() -> None:
    assert storage.is_s3("s3://b/k") and not storage.is_s3("/tmp/x") and not storage.is_s3("file:///x")
    assert storage.local_path("file:///tmp/a/b") == Path("/tmp/a/b")
    assert storage.local_path("file://localhost/tmp/a") == Path("/tmp/a")
    assert storage.join("s3://bucket", "a/", "/b") == "s3://bucket/a/b"
    assert storage.join("s3://bucket/pre/", "x") == "s3://bucket/pre/x"
    assert storage.join("file:///", "x") == "file:///x"
    assert storage.join("/tmp", "a", "b") == "/tmp/a/b"
    with pytest.raises(StorageError, match="not a local path"):
        storage.local_path("s3://b/k")
    with pytest.raises(StorageError, match="unsupported scheme 'gs'"):
        storage.read_bytes("gs://b/k")
    with pytest.raises(StorageError, match="absolute path"):
        storage.read_bytes("file://relative/path")
    with pytest.raises(StorageError, match="needs a bucket"):
        storage.read_bytes("s3:///key")


def test_errors_pickle_for_ray_workers() -> None:
    err = StorageNotFound("s3://b/k", "not found (NoSuchKey)")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is StorageNotFound and str(back) == str(err) == "s3://b/k: not found (NoSuchKey)"


def test_s3_options_resolve_env_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    assert S3Options().resolved().endpoint_url == "http://127.0.0.1:9"
    assert S3Options(endpoint_url="http://x:1").resolved().endpoint_url == "http://x:1"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hush")
    assert "hush" not in repr(S3Options().resolved())


def test_s3_secrets_never_print_but_reach_the_boto3_client(monkeypatch: pytest.MonkeyPatch) -> None:
    from ecomine.storage._options import _client

    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID"):
        monkeypatch.delenv(name, raising=False)
    options = S3Options(
        endpoint_url="http://127.0.0.1:9", region="us-east-1", access_key_id="AKID",
        secret_access_key="hush-key-4b1e", session_token="hush-token-0c9d",
    )
    printed = [repr(options), str(options), options.model_dump_json(), json.dumps(options.model_dump(mode="json")),
               repr(options.model_dump()), repr(options.resolved()), options.resolved().model_dump_json()]
    assert not [text for text in printed if "hush" in text]
    assert S3Options(**options.model_dump()) == options  # a dict dump rebuilds the same options (serve's replicas)

    creds = _client(options)._request_signer._credentials.get_frozen_credentials()
    assert (creds.access_key, creds.secret_key, creds.token) == ("AKID", "hush-key-4b1e", "hush-token-0c9d")

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hush-env-77aa")
    from_env = S3Options(endpoint_url="http://127.0.0.1:9", access_key_id="AKID").resolved()
    assert "hush" not in repr(from_env) + from_env.model_dump_json()
    assert _client(from_env)._request_signer._credentials.get_frozen_credentials().secret_key == "hush-env-77aa"


def test_import_does_no_work() -> None:
    """Importing storage must not import boto3, create clients or touch the environment."""
    code = (
        "import sys, ecomine.storage, ecomine.storage._options as o; "
        "assert 'boto3' not in sys.modules, 'boto3 imported at import time'; "
        "assert o._CLIENTS == {}"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_all_is_complete() -> None:
    """Every public name defined in a storage module is in its ``__all__`` and in the package's."""
    assert module_exports(storage) <= set(storage.__all__)


@pytest.mark.parametrize(
    ("code", "kind", "words"),
    [
        ("AccessDenied", storage.StorageAccessDenied, "access denied"),
        ("InvalidAccessKeyId", storage.StorageAccessDenied, "access denied"),
        ("NoSuchKey", StorageNotFound, "not found"),
        ("NoSuchBucket", StorageNotFound, "bucket not found"),
        ("SlowDown", StorageError, "S3 error SlowDown"),
    ],
)
def test_s3_error_codes_map_onto_the_storage_family(code: str, kind: type[StorageError], words: str) -> None:
    """The mapping the S3 server's answers go through (the server itself is in tests/integration)."""
    from botocore.exceptions import ClientError

    exc = ClientError({"Error": {"Code": code, "Message": "the server said so"}}, "GetObject")
    mapped = _s3_error("s3://b/k", exc, client=None)
    assert type(mapped) is kind
    assert str(mapped).startswith(f"s3://b/k: {words}") and "the server said so" in str(mapped)
