"""The storage exception family (tree in ``ecomine.storage``'s docstring).

Every storage function raises only these (plus the caller's own bugs); the
local and S3 backends map their native errors onto them.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "StorageError", "StorageNotFound", "StorageAccessDenied", "StorageUnreachable", "StorageCorrupt", "StorageConflict",
]


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


class StorageConflict(StorageError, FileExistsError):
    """A conditional write found the object already there, or changed since it was read."""
