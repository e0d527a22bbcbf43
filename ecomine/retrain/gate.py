"""The champion/challenger gate: a paired bootstrap over held-out units and the promotion rule.

Sits under `ecomine.retrain.pipeline` (which scores both versions on the same newest holdout
and hands the per-unit values here); pure numpy, no Ray, no registry.

The test: both versions are scored on the same units (users for recommend), so the
comparison is **paired**: each of `resamples` bootstrap draws takes N units with
replacement and computes both aggregates on that draw; the improvement is
relative, `challenger / champion - 1` for a metric where larger is better
(`1 - challenger / champion` where smaller is, e.g. pinball). The two-sided
percentile interval at `confidence` is reported; the challenger passes when the
interval's **lower** end clears `min_improvement` (so a 95 % interval gives a
one-sided 97.5 % test that the true improvement exceeds the margin). Guard
metrics must not regress past their tolerance (relative, point estimates): a
challenger that gains on NDCG by giving up recall elsewhere is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["Comparison", "GateDecision", "paired_bootstrap", "mean_statistic", "decide"]

# one draw of unit indices -> (champion aggregate, challenger aggregate)
Statistic = Callable[[np.ndarray], tuple[float, float]]


@dataclass
class Comparison:
    """One metric, both versions, on the same units."""

    metric: str
    mode: str  # max | min
    champion: float
    challenger: float
    improvement: float  # relative, positive = the challenger is better
    ci_low: float
    ci_high: float
    confidence: float
    resamples: int
    units: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _improvement(champion: np.ndarray | float, challenger: np.ndarray | float, mode: str) -> np.ndarray | float:
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.asarray(challenger, dtype=np.float64) / np.asarray(champion, dtype=np.float64)
    imp = ratio - 1.0 if mode == "max" else 1.0 - ratio
    # a champion scoring exactly 0 (max) gives +inf for any gain, 0 for none
    return np.where(np.isnan(imp), 0.0, imp)


def mean_statistic(champion: np.ndarray, challenger: np.ndarray) -> Statistic:
    """The aggregate of a per-unit metric that is a mean (NDCG, recall, pinball per series)."""
    c, h = np.asarray(champion, dtype=np.float64), np.asarray(challenger, dtype=np.float64)
    if c.shape != h.shape or c.ndim != 1:
        raise ValueError(f"paired values need the same 1-d shape, got {c.shape} and {h.shape}")
    return lambda idx: (float(c[idx].mean()), float(h[idx].mean()))


def paired_bootstrap(
    metric: str, statistic: Statistic, units: int, *, mode: str = "max", resamples: int = 1000,
    confidence: float = 0.95, seed: int = 0,
) -> Comparison:
    """Percentile interval of the challenger's relative improvement over the champion."""
    if units < 2:
        raise ValueError(f"{metric}: a bootstrap needs at least 2 held-out units, got {units}")
    rng = np.random.default_rng(seed)
    full = np.arange(units)
    champion, challenger = statistic(full)
    draws = np.empty(resamples)
    for b in range(resamples):
        c, h = statistic(rng.integers(0, units, size=units))
        draws[b] = _improvement(c, h, mode)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(draws, [alpha, 1.0 - alpha])
    return Comparison(metric, mode, champion, challenger, float(_improvement(champion, challenger, mode)),
                      float(lo), float(hi), confidence, resamples, units)


@dataclass
class GateDecision:
    promote: bool
    reason: str
    primary: Comparison | None
    guards: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"promote": self.promote, "reason": self.reason,
                "primary": self.primary.as_dict() if self.primary else None, "guards": self.guards}


def decide(primary: Comparison, guards: list[tuple[Comparison, float]], min_improvement: float,
           level: tuple[float, float] | None = None) -> GateDecision:
    """Promote iff the primary interval's lower end clears `min_improvement`, no guard regresses
    by more than its tolerance (`(comparison, tolerance)`, relative), and - with `level =
    (previous, max_drop)` - the better of the two versions still scores within `max_drop` of
    `previous` (the champion's primary metric on the holdout it was promoted on).

    The level check is a data-quality floor: a feed whose newest month is broken drags both
    versions down together, and a challenger that learned the broken month's popularity can
    still "win" on it; a collapse of the whole level is the sign, not the difference."""
    if level is not None:
        previous, max_drop = level
        best = max(primary.champion, primary.challenger) if primary.mode == "max" else min(primary.champion, primary.challenger)
        change = float(_improvement(previous, best, primary.mode))
        if change < -max_drop:
            return GateDecision(
                False, f"refused: {primary.metric} of both versions on the newest holdout ({best:.4f} at best) is "
                f"{-change:.0%} below the champion's {previous:.4f} when it was promoted (gate.max_level_drop "
                f"{max_drop:.0%}): the new data looks broken; check the feed (ecomine monitor) before retraining",
                primary, [])
    checked, broken = [], []
    for comp, tol in guards:
        ok = comp.improvement >= -tol
        checked.append({**comp.as_dict(), "tolerance": tol, "ok": ok})
        if not ok:
            broken.append(f"{comp.metric} {comp.improvement:+.2%} (tolerance -{tol:.2%})")
    p = primary
    interval = f"{p.metric} {p.improvement:+.2%} [{p.ci_low:+.2%}, {p.ci_high:+.2%}] at {p.confidence:.0%} over {p.units} units"
    if p.ci_low <= min_improvement:
        return GateDecision(False, f"refused: {interval}; the lower end does not clear the margin {min_improvement:+.2%}",
                            p, checked)
    if broken:
        return GateDecision(False, f"refused: {interval} clears the margin, but guard(s) regressed: {'; '.join(broken)}",
                            p, checked)
    return GateDecision(True, f"promoted: {interval} clears the margin {min_improvement:+.2%}; guards held", p, checked)
