"""The registry's exception family (the tree is in ``ecomine.registry``'s docstring).

ChecksumMismatch carries ``file``/``expected``/``actual`` and pickles with them, so a
Ray worker's refusal reaches the driver whole.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RegistryError", "InvalidName", "VersionNotFound", "VersionExists", "StageError", "ChecksumMismatch"]


class RegistryError(Exception):
    """The registry refused or could not do what was asked."""


class InvalidName(RegistryError, ValueError):
    """A task, version or stage name outside ``NAME_PATTERN`` or reserved."""


class VersionNotFound(RegistryError):
    """No such task/version, an empty stage, or no versions at all."""


class VersionExists(RegistryError):
    """The version id is already registered for this task."""


class StageError(RegistryError):
    """A stage operation that cannot be done (nothing to roll back to, stage holds the version)."""


class ChecksumMismatch(RegistryError):
    """A file of a version differs from its manifest; ``expected``/``actual`` are None when absent."""

    def __init__(self, message: str, *, file: str, expected: str | None, actual: str | None) -> None:
        super().__init__(message)
        self.file = file
        self.expected = expected
        self.actual = actual

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_mismatch, (str(self), self.file, self.expected, self.actual))


def _rebuild_mismatch(message: str, file: str, expected: str | None, actual: str | None) -> ChecksumMismatch:
    return ChecksumMismatch(message, file=file, expected=expected, actual=actual)
