"""The S3 side of storage: botocore's exceptions mapped onto the StorageError family.

botocore is imported inside the functions, so a local-only process never loads it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ecomine.storage._errors import (
    StorageAccessDenied,
    StorageConflict,
    StorageError,
    StorageNotFound,
    StorageUnreachable,
)

__all__: list[str] = []  # helpers of the storage functions only; nothing public


_NOT_FOUND_CODES = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}
# A conditional PUT that lost: 412 (the condition failed), 409 (a concurrent conditional write won).
_CONFLICT_CODES = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
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
        if code in _CONFLICT_CODES:
            return StorageConflict(uri, f"conditional write refused ({code}: {message})")
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
