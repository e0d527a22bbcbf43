"""The local-folder side of storage: OSError mapping, atomic writes, file walks.

Atomic here means a temp file beside the target (``.<name>.<hex>.tmp``, hidden
from listings), fsynced, then ``os.replace``: a reader sees the old bytes or the
new ones, never half.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ecomine.storage._errors import StorageAccessDenied, StorageConflict, StorageError, StorageNotFound

__all__: list[str] = []  # helpers of the storage functions only; nothing public

# Temp files of atomic local writes (".<name>.<hex>.tmp") and the lock files of compare-and-swap
# writes (".<name>.ecomine-lock"), both beside their target; hidden from list_prefix and copies.
_TMP_RE = re.compile(r"^\..+\.([0-9a-f]{12}\.tmp|ecomine-lock)$")


def _local_error(uri: str, exc: OSError) -> StorageError:
    cause = exc.strerror or str(exc)
    if isinstance(exc, FileNotFoundError):
        return StorageNotFound(uri, f"not found ({cause})")
    if isinstance(exc, FileExistsError):
        return StorageConflict(uri, "already exists")
    if isinstance(exc, PermissionError):
        return StorageAccessDenied(uri, f"access denied ({cause})")
    if isinstance(exc, IsADirectoryError):
        return StorageError(uri, "is a folder, not a file")
    return StorageError(uri, f"{type(exc).__name__}: {cause}")


@contextlib.contextmanager
def _local_call(uri: str) -> Iterator[None]:
    try:
        yield
    except StorageError:
        raise
    except OSError as exc:
        raise _local_error(uri, exc) from exc


@contextlib.contextmanager
def _atomic_local(path: Path, *, exclusive: bool = False) -> Iterator[IO[bytes]]:
    """Yield a file that becomes ``path`` only if the block finishes; else nothing is left.

    ``exclusive``: only if ``path`` does not exist yet (FileExistsError otherwise): the temp
    file is hard-linked into place, which, unlike ``os.replace``, refuses an existing name.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    # os.open with 0o666 lets the umask decide permissions, like a plain open() would.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            os.link(tmp, path)
            os.unlink(tmp)
        else:
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


def _local_files(root: Path) -> list[str]:
    """Relative POSIX paths of the files under ``root`` (recursive), temp files excluded."""
    out: list[str] = []
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            if _TMP_RE.match(name):
                continue
            out.append(Path(dirpath, name).relative_to(root).as_posix())
    return out
