"""Names the registry accepts: tasks, versions, stages; and how new version ids are drawn.

Every path the registry builds comes from names checked here, so a name can never
climb out of its folder (``../x``) or shadow a ref (``latest``, a stage).
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timezone
from typing import Literal, get_args

from ecomine.registry._errors import InvalidName

__all__ = ["Stage", "STAGES", "NAME_PATTERN", "new_version_id"]

Stage = Literal["staging", "production"]
STAGES: tuple[str, ...] = get_args(Stage)
NAME_PATTERN = r"[a-z0-9][a-z0-9._-]{0,63}"
_NAME_RE = re.compile(NAME_PATTERN)
_RESERVED_VERSIONS = frozenset({"latest", "stages", *STAGES})


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_version_id(now: datetime | None = None) -> str:
    """A sortable, unique-enough id: ``v<UTC yyyymmdd-hhmmss>-<8 random hex>``.

    32 random bits per second: two ids of the same second collide about once in
    four billion pairs, and :meth:`Registry.register` retries with a fresh id if one does.
    """
    moment = (now or _utcnow()).astimezone(timezone.utc)
    return f"v{moment:%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"


def _check_name(kind: str, value: object) -> str:
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise InvalidName(f"{kind} {value!r} is not a valid name: use {NAME_PATTERN}")
    return value


def _check_version(version: object) -> str:
    _check_name("version", version)
    if version in _RESERVED_VERSIONS:
        raise InvalidName(f"version {version!r} is reserved (it names a ref): choose another")
    return str(version)


def _check_stage(stage: object) -> str:
    if stage not in STAGES:
        raise InvalidName(f"stage {stage!r} is not one of {', '.join(STAGES)}")
    return str(stage)
