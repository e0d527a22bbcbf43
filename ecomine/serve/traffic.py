"""Traffic between two model arms of one task: sticky weighted A/B or canary, and shadow.

Sits inside ``ecomine.serve`` beside the ingress, which asks it where each
request goes; it owns the split (a salted hash of the routing key, so a user
stays in one arm for as long as the weight and salt stay), the comparison of a
champion's and a challenger's answers, and the bounded record of shadow
comparisons that ``GET /v1/models`` reports. Ray-free: unit tests call it directly.

Modes (``TrafficPolicy.mode``):

- ``ab`` / ``canary``: the challenger serves ``weight`` of the routing keys (a
  canary is an A/B with a small weight; the two names differ only in intent).
- ``shadow``: the champion answers every caller; ``weight`` of the requests are
  also sent to the challenger, and both answers are logged side by side.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ecomine.predict.tasks import predict_task

__all__ = [
    "Arm",
    "TrafficPolicy",
    "bucket",
    "assign",
    "routing_key",
    "shadow_sampled",
    "agreement",
    "ShadowRecorder",
]

Arm = Literal["champion", "challenger"]


class TrafficPolicy(BaseModel):
    """How requests are shared between a task's champion and challenger."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["ab", "canary", "shadow"] = Field(
        "ab", description="ab | canary: split by routing key; shadow: champion answers, challenger gets a copy"
    )
    weight: float = Field(
        0.1, ge=0.0, le=1.0,
        description="ab/canary: share of routing keys served by the challenger; shadow: share of requests copied",
    )
    salt: str = Field(
        "ecomine", min_length=1, max_length=128,
        description="hash salt; change it to draw a fresh, independent split",
    )


def bucket(key: str, salt: str) -> float:
    """A uniform number in [0, 1) fixed by ``(salt, key)``: the first 8 bytes of sha256."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign(key: str, policy: TrafficPolicy) -> Arm:
    """The arm that serves ``key``: sticky (same key, same arm) and weighted.

    In shadow mode the caller is always served by the champion.
    """
    if policy.mode == "shadow":
        return "champion"
    return "challenger" if bucket(key, policy.salt) < policy.weight else "champion"


def shadow_sampled(key: str, request_id: str, policy: TrafficPolicy) -> bool:
    """Whether this request is copied to the challenger (shadow mode only)."""
    if policy.mode != "shadow":
        return False
    if policy.weight >= 1.0:
        return True
    return bucket(f"{key}\x00{request_id}", policy.salt + ":shadow") < policy.weight


def routing_key(user_id: str | None, parts: Sequence[str] = ()) -> str:
    """What the split hashes: the user id when there is one, else the request's own items.

    Requests without a user (an explicit history, a demand call) still land in a
    fixed arm for the same content, so retries are consistent.
    """
    if user_id is not None:
        return f"u:{user_id}"
    return "c:" + "\x1f".join(parts)


def agreement(task: str, champion: Mapping[str, Any], challenger: Mapping[str, Any]) -> float | None:
    """How far two answers of ``task`` agree, in [0, 1] (1: the same answer): the task's own measure
    (``predict.tasks``: top-k overlap, 1 - WAPE of the medians, flagged decisions agreeing)."""
    return predict_task(task).agreement(dict(champion), dict(challenger))


class ShadowRecorder:
    """Counts and keeps the latest shadow comparisons of one task (thread-safe, bounded)."""

    def __init__(self, keep: int = 50) -> None:
        self._recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self.compared = 0
        self.failed = 0
        self._sum = 0.0
        self._n_scored = 0

    def record(self, entry: dict[str, Any]) -> None:
        """Add one comparison: ``agreement`` (float or None) plus what to show (hashed ids only)."""
        with self._lock:
            self.compared += 1
            score = entry.get("agreement")
            if score is not None:
                self._sum += float(score)
                self._n_scored += 1
            self._recent.append({"at": round(time.time(), 3), **entry})

    def record_failure(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.failed += 1
            self._recent.append({"at": round(time.time(), 3), **entry})

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {
                "compared": self.compared,
                "failed": self.failed,
                "mean_agreement": (self._sum / self._n_scored) if self._n_scored else None,
                "recent": list(self._recent),
            }
