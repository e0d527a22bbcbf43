"""Stage pointers: ``<root>/<task>/stages/<stage>.json`` names the version a stage serves.

A pointer keeps its history (``previous``, oldest first), so rollback is one write.
Promote and rollback are a read-modify-write of that one file, made safe against
concurrent writers by a compare-and-swap (``storage.swap_json``: S3 ``If-Match`` on
the ETag, a locked compare-then-replace locally). A writer that loses the race
re-reads and re-applies its change, a bounded number of times, then gives up with a
StageError naming the stage and the version; nothing it lost is half-written.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import datetime

from pydantic import BaseModel, ConfigDict, ValidationError

from ecomine import storage
from ecomine.registry._errors import RegistryError, StageError
from ecomine.registry._names import _utcnow
from ecomine.storage import S3Options, StorageConflict, StorageNotFound

__all__ = ["StagePointer", "read_pointer", "change_pointer", "promoted", "rolled_back"]

_STAGES_DIR = "stages"
_MAX_HISTORY = 100
# Each lost race means another writer's change went in, so N writers racing need at most
# N - 1 retries each; 10 attempts cover 10 concurrent writers of one stage.
_SWAP_ATTEMPTS = 10


class StagePointer(BaseModel):
    """``<root>/<task>/stages/<stage>.json``: the version a stage serves and its history."""

    model_config = ConfigDict(extra="ignore")

    stage: str
    version: str
    previous: list[str] = []  # oldest first; rollback returns to previous[-1]
    updated_at: datetime


def read_pointer(uri: str, *, task: str, options: S3Options | None) -> tuple[StagePointer | None, str | None]:
    """The pointer at ``uri`` and its tag for a compare-and-swap; (None, None) if never written."""
    try:
        raw, tag = storage.read_json_tagged(uri, options=options)
    except StorageNotFound:
        return None, None
    try:
        return StagePointer.model_validate(raw), tag
    except ValidationError as exc:
        raise RegistryError(f"{task}: stage pointer {uri} is invalid ({exc.errors()[0]['msg']})") from exc


def change_pointer(
    uri: str,
    change: Callable[[StagePointer | None], StagePointer],
    *,
    task: str,
    stage: str,
    doing: str,
    options: S3Options | None,
) -> StagePointer:
    """Read the pointer, write ``change(current)`` only if the pointer is still what was read.

    ``change`` returns the new pointer, or ``current`` itself when there is nothing to
    write; it may raise StageError. On a lost race it is called again on the newer pointer.
    """
    for attempt in range(_SWAP_ATTEMPTS):
        current, tag = read_pointer(uri, task=task, options=options)
        new = change(current)
        if new is current:
            return new
        try:
            storage.swap_json(uri, new.model_dump(mode="json"), expected=tag, options=options)
            return new
        except StorageConflict:
            time.sleep(random.uniform(0, 0.005 * 2**attempt))  # spread the retries of racing writers
    raise StageError(
        f"stage {stage!r} of task {task!r}: {doing} lost the race to other writers {_SWAP_ATTEMPTS} times "
        "in a row; nothing was written, try again"
    )


def promoted(current: StagePointer | None, stage: str, version: str) -> StagePointer:
    """``current`` pointed at ``version``, the old version appended to its history."""
    if current is not None and current.version == version:
        return current
    history = [*current.previous, current.version] if current is not None else []
    return StagePointer(stage=stage, version=version, previous=history[-_MAX_HISTORY:], updated_at=_utcnow())


def rolled_back(current: StagePointer | None, *, task: str, stage: str, committed: Callable[[], list[str]]) -> StagePointer:
    """``current`` pointed back at the newest version of its history (which must still be committed)."""
    if current is None:
        raise StageError(f"stage {stage!r} of task {task!r} holds no version; nothing to roll back")
    if not current.previous:
        raise StageError(
            f"stage {stage!r} of task {task!r} has no previous version to roll back to "
            f"(it holds {current.version})"
        )
    target = current.previous[-1]
    if target not in committed():
        raise StageError(
            f"stage {stage!r} of task {task!r} would roll back to {target}, which was deleted; "
            "promote a version explicitly"
        )
    return StagePointer(stage=stage, version=target, previous=current.previous[:-1], updated_at=_utcnow())
