"""Stage pointers: ``<root>/<task>/stages/<stage>.json`` names the version a stage serves.

A pointer keeps its history (``previous``, oldest first), so rollback is one write.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

__all__ = ["StagePointer"]

_STAGES_DIR = "stages"
_MAX_HISTORY = 100


class StagePointer(BaseModel):
    """``<root>/<task>/stages/<stage>.json``: the version a stage serves and its history."""

    model_config = ConfigDict(extra="ignore")

    stage: str
    version: str
    previous: list[str] = []  # oldest first; rollback returns to previous[-1]
    updated_at: datetime
