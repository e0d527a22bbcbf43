"""The live side of drift: what one served arm has seen, beside its version's reference profile.

Sits in ``ecomine.serve`` under the deployments: each ``ModelState`` gets an
``ArmMonitor`` when it is loaded (a swap starts a new window against the new
version's profile; requests in flight keep recording into the old one). The
hot path only observes: a few numpy operations into fixed-size reservoirs
(``ecomine.data.drift.LiveWindow``). PSI and KS are computed when asked
(``GET /v1/models``, ``GET /v1/drift``) and by the deployment's periodic
publisher of the Prometheus gauges, never per request. Ray-free.

Which reference an arm uses: a single version its own ``profile.json``; an
ensemble the profile of its heaviest member (every member sees the same
inputs), with the prediction features left out (the mixed answer is not that
member's). A version without a profile (registered before profiles, a
stand-in) serves as before; its drift block says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ecomine.data.drift import (
    FEATURES,
    PROFILE_FILE,
    LiveWindow,
    ProfileError,
    ReferenceProfile,
    compare,
    demand_observation,
    recommend_observation,
    risk_observation,
)

__all__ = ["WINDOW", "ArmMonitor", "no_profile_detail"]

WINDOW = 2048  # values kept per feature (a uniform sample of everything seen since the version was loaded)


def no_profile_detail(task: str, version: str) -> str:
    return (f"{task}/{version} has no {PROFILE_FILE} (registered before drift profiles, or not by `ecomine train`); "
            "retrain it to monitor drift")


class ArmMonitor:
    """One arm's live window and the reference it is compared against (see the module docstring)."""

    def __init__(self, state: Any, *, size: int = WINDOW) -> None:
        self.task = state.task
        self.window = LiveWindow(state.task, size=size)
        self.observations = 0
        heaviest = max(range(len(state.members)), key=lambda i: state.weights[i])
        member = state.members[heaviest]
        self.reference_version: str = member.version
        self.profile: ReferenceProfile | None = None
        self.detail: str | None = None
        path = member.folder / PROFILE_FILE if member.folder is not None else None
        if path is None or not path.exists():
            self.detail = no_profile_detail(state.task, member.version)
        else:
            try:
                self.profile = ReferenceProfile.loads(path.read_text(), where=f"{state.task}/{member.version}/{PROFILE_FILE}")
            except ProfileError as exc:
                self.detail = str(exc)
        self.skip: dict[str, str] = {}
        if len(state.members) > 1:
            self.skip = {name: f"ensemble: its mixed answer is not comparable to {self.task}/{member.version}'s reference"
                         for name, (role, _) in FEATURES[self.task].items() if role == "prediction"}
        lookups = self.profile.lookups if self.profile is not None else {}
        self._item_rank = np.asarray(lookups["item_rank"], dtype=np.int64) if "item_rank" in lookups else None
        self._item_level: dict[str, float] | None = lookups.get("item_level")

    # ----------------------------------------------------------------- the hot path

    def recommend(self, n_given: int, ids: np.ndarray | None, row: np.ndarray | None) -> None:
        self.observations += 1
        self.window.observe(recommend_observation(n_given, ids, self._item_rank, row))

    def demand(self, req: dict[str, Any], answer: dict[str, Any]) -> None:
        qs = list(req.get("quantiles") or [0.5])
        mid = min(range(len(qs)), key=lambda i: abs(qs[i] - 0.5))  # the median, or the quantile nearest it
        forecasts = answer.get("forecasts", [])
        known = [not f["fallback"] for f in forecasts]
        p50 = [float(np.mean(f["values"][mid])) for f, k in zip(forecasts, known) if k]
        self.observations += 1
        self.window.observe(demand_observation([f["item_id"] for f in forecasts], known, np.array(p50), self._item_level))

    def risk(self, orders: list[dict[str, Any]], probabilities: list[float]) -> None:
        self.observations += 1
        self.window.observe(risk_observation(orders, np.asarray(probabilities, dtype=np.float64)))

    # ----------------------------------------------------------------- reading it

    def window_json(self) -> dict[str, Any]:
        """What ``GET /v1/drift`` returns for this arm: the reference version and the raw samples."""
        return {"task": self.task, "reference_version": self.reference_version, "has_profile": self.profile is not None,
                "detail": self.detail, "observations": self.observations, "skip": self.skip,
                "window": self.window.snapshot()}

    def report(self, **thresholds: Any) -> dict[str, Any]:
        """The ``drift`` block of ``GET /v1/models``: PSI / KS per feature at the default thresholds."""
        head = {"reference_version": self.reference_version, "observations": self.observations}
        if self.profile is None:
            return {**head, "status": "no_profile", "detail": self.detail, "features": []}
        return {**head, **compare(self.profile, self.window.arrays(), skip=self.skip, **thresholds).to_json(),
                "detail": None}
