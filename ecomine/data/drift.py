"""Drift: a version's reference profile, live windows of the same features, and PSI / KS between them.

Sits in ``ecomine.data``, upstream of both sides that use it: ``ecomine.train``
writes a ``profile.json`` into every version folder at registration
(``ecomine.train.profiles``), ``ecomine.serve`` keeps a bounded reservoir
sample of the same features from live requests (``ecomine.serve.monitor``),
and ``ecomine monitor`` compares the two. Pure numpy + scipy; nothing here
knows a model.

The features are defined once, per task, in ``FEATURES`` and observed through
the same functions on both sides (``recommend_observation``,
``demand_observation``, ``risk_observation``), so a live value and a
reference value mean the same thing.

A feature's reference is small: the decile edges of the training-side values
with each bin's share (for PSI) and 256 equal-mass quantiles (a stratified
stand-in for the sample, for scipy's two-sample KS test).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

__all__ = [
    "PROFILE_FILE",
    "PROFILE_FORMAT",
    "FEATURES",
    "PSI_THRESHOLD",
    "KS_THRESHOLD",
    "MIN_SAMPLES",
    "FeatureReference",
    "ReferenceProfile",
    "ProfileError",
    "Reservoir",
    "LiveWindow",
    "FeatureComparison",
    "DriftReport",
    "bin_shares",
    "psi",
    "ks",
    "compare",
    "popularity_ranks",
    "recommend_observation",
    "demand_observation",
    "risk_observation",
    "build_profile",
]

PROFILE_FILE = "profile.json"
PROFILE_FORMAT = 1
# The usual reading of PSI: < 0.1 stable, 0.1-0.2 moderate, >= 0.2 a significant shift.
PSI_THRESHOLD = 0.2
# KS statistic (the largest gap between the two CDFs) counted as drift; its p-value is reported beside it.
KS_THRESHOLD = 0.3
MIN_SAMPLES = 100
_BINS = 10
_POINTS = 256
_EPS = 1e-4  # share given to an empty bin, so ln(a / e) stays finite

# task -> feature -> (role, meaning). Inputs are what a live request carries; predictions what the model answers.
FEATURES: dict[str, dict[str, tuple[str, str]]] = {
    "recommend": {
        "history_length": ("input", "items in the request's history"),
        "item_popularity_rank": ("input", "training-popularity rank of each known history item (1 = most bought)"),
        "unknown_item_share": ("input", "share of a history's items the model does not know"),
        "top1_probability": ("prediction", "largest next-item probability of the answer"),
    },
    "demand": {
        "series_level": ("input", "mean units per period over the last context of each requested panel item"),
        "unknown_item_share": ("input", "share of a request's items the model does not know (cold-start)"),
        "p50_forecast": ("prediction", "mean median forecast per period of each requested item"),
    },
    "risk": {
        "order_value": ("input", "sum of quantity x price over an order's priced lines"),
        "lines_per_order": ("input", "lines in an order"),
        "quantity": ("input", "units on each line"),
        "price": ("input", "unit price of each priced line"),
        "probability": ("prediction", "return probability of each order"),
    },
}


class ProfileError(ValueError):
    """A profile that is missing, of another format, or for another task; the message names which."""


# --------------------------------------------------------------------------- the statistics


def bin_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of ``values`` in each bin (-inf, e1], (e1, e2], ..., (ek, inf): len(edges) + 1 shares."""
    values = np.asarray(values, dtype=np.float64)
    counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)
    return counts / max(len(values), 1)


def psi(reference: np.ndarray, live: np.ndarray, eps: float = _EPS) -> float:
    """Population stability index sum((a - e) ln(a / e)) of two bin-share vectors (empty bins get ``eps``)."""
    e = np.maximum(np.asarray(reference, dtype=np.float64), eps)
    a = np.maximum(np.asarray(live, dtype=np.float64), eps)
    return float(np.sum((a - e) * np.log(a / e)))


def ks(reference_points: np.ndarray, live: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov (scipy.stats.ks_2samp): (statistic, p-value)."""
    from scipy.stats import ks_2samp

    res = ks_2samp(np.asarray(reference_points, dtype=np.float64), np.asarray(live, dtype=np.float64))
    return float(res.statistic), float(res.pvalue)


# --------------------------------------------------------------------------- the reference


@dataclass
class FeatureReference:
    """One feature's training-side distribution: PSI bins and KS points."""

    n: int
    edges: list[float]
    shares: list[float]
    points: list[float]
    mean: float

    @classmethod
    def of(cls, values: Iterable[float]) -> FeatureReference:
        x = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64)
        x = x[np.isfinite(x)]
        if x.size == 0:
            return cls(n=0, edges=[], shares=[1.0], points=[], mean=float("nan"))
        # inverted_cdf: every edge and point is a value that occurred (discrete features keep their ties)
        edges = np.unique(np.quantile(x, np.arange(1, _BINS) / _BINS, method="inverted_cdf"))
        points = np.quantile(x, (np.arange(min(_POINTS, x.size)) + 0.5) / min(_POINTS, x.size), method="inverted_cdf")
        return cls(n=int(x.size), edges=_round(edges), shares=_round(bin_shares(x, edges)), points=_round(points),
                   mean=float(x.mean()))


def _round(a: np.ndarray) -> list[float]:
    return [float(f"{v:.6g}") for v in np.asarray(a, dtype=np.float64)]


@dataclass
class ReferenceProfile:
    """``profile.json`` of a version: per-feature references plus the lookups serving needs to observe them."""

    task: str
    features: dict[str, FeatureReference]
    lookups: dict[str, Any] = field(default_factory=dict)  # recommend: item_rank by vocab id; demand: item_level
    source: str = ""  # what the reference was computed on

    def to_json(self) -> dict[str, Any]:
        return {"format": PROFILE_FORMAT, "task": self.task, "source": self.source,
                "features": {k: vars(v) for k, v in self.features.items()}, "lookups": self.lookups}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), allow_nan=True)

    @classmethod
    def from_json(cls, data: dict[str, Any], *, where: str = PROFILE_FILE) -> ReferenceProfile:
        if not isinstance(data, dict) or data.get("format") != PROFILE_FORMAT:
            raise ProfileError(f"{where}: not a format-{PROFILE_FORMAT} drift profile")
        task = data.get("task")
        if task not in FEATURES:
            raise ProfileError(f"{where}: unknown task {task!r}")
        try:
            feats = {k: FeatureReference(**v) for k, v in data["features"].items()}
        except (KeyError, TypeError) as exc:
            raise ProfileError(f"{where}: malformed features ({exc})") from None
        return cls(task=task, features=feats, lookups=data.get("lookups") or {}, source=data.get("source", ""))

    @classmethod
    def loads(cls, text: str, *, where: str = PROFILE_FILE) -> ReferenceProfile:
        try:
            return cls.from_json(json.loads(text), where=where)
        except json.JSONDecodeError as exc:
            raise ProfileError(f"{where}: not JSON ({exc})") from None


def build_profile(task: str, observations: dict[str, Iterable[float]], *, lookups: dict[str, Any] | None = None,
                  source: str = "") -> ReferenceProfile:
    """A ReferenceProfile from each feature's training-side values (every feature of ``FEATURES[task]``)."""
    missing = sorted(set(FEATURES[task]) - set(observations))
    if missing:
        raise ProfileError(f"{task} profile: no values for {missing}")
    return ReferenceProfile(task=task, features={k: FeatureReference.of(observations[k]) for k in FEATURES[task]},
                            lookups=lookups or {}, source=source)


# --------------------------------------------------------------------------- the observations (both sides)


def popularity_ranks(train_sequences: list[np.ndarray], n_items: int) -> np.ndarray:
    """Rank by training purchases of each vocab id 0..n_items (1 = most bought; ties by id; 0 for padding)."""
    counts = np.bincount(np.concatenate(train_sequences) if train_sequences else np.zeros(0, np.int64),
                         minlength=n_items + 1)[: n_items + 1]
    counts[0] = -1  # padding sorts after every item, so items take ranks 1..n_items
    order = np.argsort(-counts, kind="stable")
    ranks = np.empty(n_items + 1, dtype=np.int64)
    ranks[order] = np.arange(1, n_items + 2)
    ranks[0] = 0
    return ranks


def recommend_observation(n_given: int, ids: np.ndarray | None, item_rank: np.ndarray | None,
                          probabilities: np.ndarray | None) -> dict[str, Any]:
    """One request: ``n_given`` history items, ``ids`` the known ones (vocab ids), the answer's probability row."""
    out: dict[str, Any] = {"history_length": n_given}
    known = 0 if ids is None else len(ids)
    if n_given:
        out["unknown_item_share"] = 1.0 - known / n_given
    if known and item_rank is not None:
        out["item_popularity_rank"] = item_rank[ids]
    if probabilities is not None and len(probabilities):
        out["top1_probability"] = float(np.max(probabilities))
    return out


def demand_observation(item_ids: list[str], known: list[bool], p50: np.ndarray,
                       item_level: dict[str, float] | None) -> dict[str, Any]:
    """One request: its items, which the model knows, and each item's mean median forecast."""
    out: dict[str, Any] = {}
    if item_ids:
        out["unknown_item_share"] = 1.0 - sum(known) / len(item_ids)
    kept = [i for i, k in zip(item_ids, known) if k]
    if item_level is not None and kept:
        out["series_level"] = np.array([item_level[i] for i in kept if i in item_level], dtype=np.float64)
    p50 = np.asarray(p50, dtype=np.float64)
    if p50.size:
        out["p50_forecast"] = p50
    return out


def risk_observation(orders: list[dict[str, Any]], probabilities: np.ndarray | None) -> dict[str, Any]:
    """One request: its orders (lines with quantity and price) and their return probabilities."""
    qty: list[float] = []
    price: list[float] = []
    value: list[float] = []
    n_lines: list[float] = []
    for order in orders:
        total = 0.0
        lines = order.get("lines") or []
        n_lines.append(len(lines))
        for line in lines:
            q, p = line.get("quantity", 1), line.get("price")
            qty.append(q)
            if p is not None:
                price.append(p)
                total += q * p
        value.append(total)
    out: dict[str, Any] = {"order_value": np.array(value), "lines_per_order": np.array(n_lines),
                           "quantity": np.array(qty, dtype=np.float64), "price": np.array(price, dtype=np.float64)}
    if probabilities is not None:
        out["probability"] = np.asarray(probabilities, dtype=np.float64)
    return out


# --------------------------------------------------------------------------- the live side


class Reservoir:
    """A uniform sample of at most ``size`` values of an unbounded stream (Vitter's algorithm R).

    Built for the serving hot path: one value costs a few hundred nanoseconds (uniforms are drawn
    4096 at a time; a numpy Generator call per value would cost more than the rest), an array is
    handled in one vectorised step.
    """

    _BLOCK = 4096

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size = size
        self.seen = 0
        self._values = np.empty(size, dtype=np.float64)
        self._rng = np.random.default_rng(seed)
        self._uniform: list[float] = []

    def _next_uniform(self) -> float:
        if not self._uniform:
            self._uniform = self._rng.random(self._BLOCK).tolist()
        return self._uniform.pop()

    def add(self, values: Any) -> None:
        if isinstance(values, (int, float)):  # one value per request: the common case
            t = self.seen + 1  # 1-based position in the stream; kept with probability size / t
            if t <= self.size:
                self._values[t - 1] = values
            else:
                slot = int(self._next_uniform() * t)
                if slot < self.size:
                    self._values[slot] = values
            self.seen = t
            return
        x = np.asarray(values, dtype=np.float64).reshape(-1)
        m = x.size
        if m == 0:
            return
        free = max(0, min(self.size - self.seen, m))
        if free:
            self._values[self.seen : self.seen + free] = x[:free]
        if free < m:
            rest = x[free:]
            t = self.seen + free + np.arange(1, rest.size + 1)  # 1-based position of each value in the stream
            slot = (self._rng.random(rest.size) * t).astype(np.int64)  # uniform in [0, t): kept when < size
            keep = slot < self.size
            self._values[slot[keep]] = rest[keep]
        self.seen += m

    def values(self) -> np.ndarray:
        return self._values[: min(self.seen, self.size)].copy()


class LiveWindow:
    """One reservoir per feature of a task; ``observe`` takes what an ``*_observation`` function returns."""

    def __init__(self, task: str, size: int = 2048, seed: int = 0) -> None:
        self.task = task
        self.reservoirs = {name: Reservoir(size, seed + k) for k, name in enumerate(FEATURES[task])}

    def observe(self, observation: dict[str, Any]) -> None:
        for name, values in observation.items():
            self.reservoirs[name].add(values)

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: r.values() for name, r in self.reservoirs.items()}

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """JSON-able: per feature, how many values were seen and the sample kept."""
        return {name: {"seen": r.seen, "values": r.values().tolist()} for name, r in self.reservoirs.items()}


# --------------------------------------------------------------------------- comparing


@dataclass
class FeatureComparison:
    feature: str
    role: str
    n_reference: int
    n_live: int
    psi: float | None = None
    ks: float | None = None
    ks_pvalue: float | None = None
    reference_mean: float | None = None
    live_mean: float | None = None
    status: str = "ok"  # ok | drift | too_few | skipped
    detail: str | None = None


@dataclass
class DriftReport:
    task: str
    features: list[FeatureComparison]
    psi_threshold: float
    ks_threshold: float
    reference: str = ""  # whose profile: "<task>/<version>"

    @property
    def drifted(self) -> list[str]:
        return [f.feature for f in self.features if f.status == "drift"]

    @property
    def status(self) -> str:
        if self.drifted:
            return "drift"
        return "ok" if any(f.status == "ok" for f in self.features) else "too_few"

    def to_json(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            return None if isinstance(v, float) and not math.isfinite(v) else v

        return {"status": self.status, "drifted": self.drifted, "psi_threshold": self.psi_threshold,
                "ks_threshold": self.ks_threshold,
                "features": [{k: clean(v) for k, v in vars(f).items()} for f in self.features]}


def compare(profile: ReferenceProfile, live: dict[str, Any], *, psi_threshold: float = PSI_THRESHOLD,
            ks_threshold: float = KS_THRESHOLD, min_samples: int = MIN_SAMPLES,
            skip: dict[str, str] | None = None) -> DriftReport:
    """PSI and KS of each feature's live values against the profile.

    ``live``: feature -> values (a list / array, or a ``LiveWindow.snapshot`` entry). A feature
    with fewer than ``min_samples`` live values is ``too_few``; ``skip`` names features not to
    compare and why (an ensemble's predictions against one member's reference).
    """
    rows = []
    for name, (role, _) in FEATURES[profile.task].items():
        ref = profile.features.get(name)
        raw = live.get(name, [])
        values = np.asarray(raw["values"] if isinstance(raw, dict) else raw, dtype=np.float64)
        values = values[np.isfinite(values)]
        row = FeatureComparison(name, role, n_reference=ref.n if ref else 0, n_live=int(values.size),
                           reference_mean=ref.mean if ref else None,
                           live_mean=float(values.mean()) if values.size else None)
        if skip and name in skip:
            row.status, row.detail = "skipped", skip[name]
        elif ref is None or ref.n == 0:
            row.status, row.detail = "skipped", "no reference values for this feature"
        elif values.size < min_samples:
            row.status, row.detail = "too_few", f"{values.size} live values, need {min_samples}"
        else:
            row.psi = psi(ref.shares, bin_shares(values, np.asarray(ref.edges)))
            row.ks, row.ks_pvalue = ks(ref.points, values)
            row.status = "drift" if row.psi >= psi_threshold or row.ks >= ks_threshold else "ok"
        rows.append(row)
    return DriftReport(profile.task, rows, psi_threshold, ks_threshold)
