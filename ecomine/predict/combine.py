"""Ensemble arithmetic for every task: how members' outputs combine, and how the combination is fitted.

Sits in `predict` (numpy/scipy only): `ecomine.ensemble.build` fits the combination
on the members' validation predictions, `ecomine.predict.runtime` applies the
same functions to live requests, so what was evaluated is what is served.

- recommend: each member's scores become probabilities through a softmax at a
  fitted temperature (a transformer's logits need ~1, an item-kNN score much
  more), then a weighted mean.
- risk: a weighted mean of the members' calibrated probabilities, then one
  Platt recalibration of the mixture fitted on validation.
- demand: a weighted mean of each quantile, re-sorted so quantiles never cross.

Weights live on the simplex. For recommend and risk they maximise the
validation likelihood of the mixture (EM for mixture weights: a concave
problem, so EM reaches the optimum, and a member that adds nothing - noise -
gets ~0); the likelihood is a proper scoring rule and smooth, where NDCG or
PR-AUC searched directly over weights is a step function that overfits the
validation split. For demand they minimise the validation pinball loss, a
linear programme solved exactly (scipy's HiGHS), then shrink toward uniform by
as much as leave-one-origin-out cross-validation says the fitted weights fail to
carry from one validation origin to another (`fit_shrunk_quantile_weights`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "ShrunkWeights",
    "fit_shrunk_quantile_weights",
    "softmax_rows",
    "mix",
    "fit_temperature",
    "fit_mixture_weights",
    "target_probabilities",
    "fit_platt",
    "apply_platt",
    "combine_quantiles",
    "fit_quantile_weights",
    "MixtureFit",
]


def softmax_rows(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of `temperature * logits` in float64; -inf entries get probability 0."""
    z = np.asarray(logits, dtype=np.float64) * temperature
    top = np.max(z, axis=-1, keepdims=True)
    e = np.exp(z - np.where(np.isfinite(top), top, 0.0))  # a row of all -inf stays all 0, not NaN
    return e / np.maximum(e.sum(axis=-1, keepdims=True), 1e-300)


def mix(rows: list[np.ndarray], weights: list[float] | np.ndarray) -> np.ndarray:
    """Weighted mean of members' arrays (weights normalised to sum 1)."""
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    out = rows[0] * w[0]
    for r, wi in zip(rows[1:], w[1:]):
        out = out + r * wi
    return out


def target_probabilities(logits: np.ndarray, targets: np.ndarray, temperature: float) -> np.ndarray:
    """[N] probability the softmax at `temperature` gives each row's target."""
    z = np.asarray(logits, dtype=np.float64) * temperature
    m = np.max(z, axis=1, keepdims=True)
    log_norm = np.log(np.exp(z - m).sum(axis=1)) + m[:, 0]
    return np.exp(z[np.arange(len(z)), targets] - log_norm)


def fit_temperature(logits: np.ndarray, targets: np.ndarray, *, bounds: tuple[float, float] = (1e-3, 1e3)) -> float:
    """The temperature t minimising the validation NLL of softmax(t * logits) at the targets."""
    from scipy.optimize import minimize_scalar

    finite = np.where(np.isfinite(logits), logits, np.nan)
    scale = float(np.nanstd(finite)) or 1.0  # search log t around 1/std, where softmax is neither flat nor one-hot

    def nll(log_t: float) -> float:
        p = target_probabilities(logits, targets, float(np.exp(log_t)))
        return -float(np.mean(np.log(np.maximum(p, 1e-300))))

    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    res = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-3})
    best = float(np.exp(res.x))
    # bounded Brent can stop in a local dip of this 1-D curve: keep the better of it and 1/std
    return best if nll(np.log(best)) <= nll(np.log(1.0 / scale)) else 1.0 / scale


@dataclass
class MixtureFit:
    """Simplex weights fitted by EM, with the validation log-likelihood of each step's mixture."""

    weights: np.ndarray
    log_likelihood: float
    iterations: int


def fit_mixture_weights(p: np.ndarray, *, iters: int = 1000, tol: float = 1e-10) -> MixtureFit:
    """Weights w on the simplex maximising mean_i log(sum_m w_m p[i, m]) (EM for mixture weights).

    `p` [N, M]: the probability member m gives example i's observed outcome.
    Each step can only raise the likelihood, and the problem is concave, so the
    fixed point is the optimum.
    """
    p = np.maximum(np.asarray(p, dtype=np.float64), 1e-300)
    n, m = p.shape
    w = np.full(m, 1.0 / m)
    prev = -np.inf
    for it in range(1, iters + 1):
        mixed = p @ w
        ll = float(np.mean(np.log(mixed)))
        w = w * (p / mixed[:, None]).mean(axis=0)
        w = w / w.sum()
        if ll - prev < tol:
            break
        prev = ll
    return MixtureFit(weights=w, log_likelihood=float(np.mean(np.log(p @ w))), iterations=it)


def fit_platt(p: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(a, b) of sigmoid(a * logit(p) + b) fitted by logistic regression on validation (sklearn)."""
    from sklearn.linear_model import LogisticRegression

    z = _logit(p)[:, None]
    y = np.asarray(y).astype(int)
    if len(np.unique(y)) < 2:
        return 1.0, 0.0
    lr = LogisticRegression(C=1e6).fit(z, y)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def apply_platt(p: np.ndarray, a: float, b: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(a * _logit(p) + b)))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def combine_quantiles(arrays: list[np.ndarray], weights: list[float] | np.ndarray, *, axis: int = -2) -> np.ndarray:
    """Weighted mean of members' quantile forecasts, sorted along the quantile `axis` (never crossing)."""
    return np.sort(mix([np.asarray(a, dtype=np.float64) for a in arrays], weights), axis=axis)


def fit_quantile_weights(preds: np.ndarray, actual: np.ndarray, quantiles: list[float]) -> np.ndarray:
    """Simplex weights minimising the mean pinball loss of the weighted mean forecast (an exact LP).

    `preds` [M, N, Q] (members, forecast points, quantiles), `actual` [N].
    Variables: w (M), u+ and u- (N*Q residual parts); with sum_m w_m pred - u+ + u- = y, u+ is the
    over-forecast and u- the under-forecast, so minimise sum_q sum_n (1 - tau_q) u+ + tau_q u-
    (pinball charges tau for falling short, 1 - tau for overshooting), subject to sum w = 1.
    """
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix, hstack, identity, vstack

    m, n, q = preds.shape
    tau = np.asarray(quantiles, dtype=np.float64)
    a_w = csr_matrix(preds.reshape(m, n * q).T)  # [(n, q), m]
    eye = identity(n * q, format="csr")
    a_eq = hstack([a_w, -eye, eye], format="csr")
    b_eq = np.repeat(np.asarray(actual, dtype=np.float64), q)
    cost = np.concatenate([np.zeros(m), np.tile(1 - tau, n), np.tile(tau, n)])
    simplex = csr_matrix(np.concatenate([np.ones(m), np.zeros(2 * n * q)])[None, :])
    res = linprog(cost, A_eq=vstack([a_eq, simplex]), b_eq=np.concatenate([b_eq, [1.0]]), bounds=(0, None), method="highs")
    if not res.success:
        return np.full(m, 1.0 / m)
    w = np.clip(res.x[:m], 0, None)
    return w / w.sum()


@dataclass
class ShrunkWeights:
    weights: np.ndarray  # final simplex weights: (1 - shrink) * fitted + shrink * uniform
    fitted: np.ndarray  # the LP's weights on every fold together
    shrink: float  # chosen by leave-one-fold-out pinball (0: keep the fit, 1: uniform)
    held_out_weights: list[list[float]]  # per fold: the LP's weights fitted without it (what CV scored on it)
    cv_pinball: dict[float, float]  # shrink -> mean held-out pinball (empty with one fold)


SHRINK_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


def fit_shrunk_quantile_weights(
    folds: list[tuple[np.ndarray, np.ndarray]], quantiles: list[float], *, grid: tuple[float, ...] = SHRINK_GRID
) -> ShrunkWeights:
    """Quantile-mixture weights fitted on every fold, shrunk toward uniform by cross-validation.

    `folds`: per validation origin, (`preds` [M, N, Q], `actual` [N]). For each fold the
    weights are fitted on the others and scored on it at each shrink in `grid`; the
    shrink with the lowest mean held-out pinball is applied to the weights fitted on all
    folds. Where origins agree the fit carries and the shrink stays near 0; where the
    member best on one origin is worst on the next (the synthetic daily log: LightGBM
    0.86 on validation, worst on test), uniform wins the held-out score and the weights
    move toward it. Ties go to the larger shrink. With one fold there is nothing to
    hold out: the fit is kept (shrink 0).
    """
    from ecomine.models.demand import pinball_loss  # the loss the task trains and reports

    m = folds[0][0].shape[0]
    uniform = np.full(m, 1.0 / m)

    def fit(parts: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        return fit_quantile_weights(np.concatenate([p for p, _ in parts], axis=1),
                                    np.concatenate([y for _, y in parts]), quantiles)

    fitted = fit(folds)
    if len(folds) < 2:
        return ShrunkWeights(fitted, fitted, 0.0, [], {})
    held_out = [fit(folds[:k] + folds[k + 1:]) for k in range(len(folds))]
    loss = {g: float(np.mean([pinball_loss(np.sort(np.tensordot((1 - g) * w + g * uniform, p, axes=1), axis=-1),
                                           y, quantiles) for w, (p, y) in zip(held_out, folds)])) for g in grid}
    best = min(loss.values())
    shrink = max(g for g in grid if loss[g] <= best * (1 + 1e-9))
    return ShrunkWeights((1 - shrink) * fitted + shrink * uniform, fitted, float(shrink),
                         [w.tolist() for w in held_out], loss)
