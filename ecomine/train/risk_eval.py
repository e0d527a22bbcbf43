"""Risk evaluation: probability metrics, the decision threshold, baselines, reliability plot, report table.

Sits in `train` beside the risk task (`ecomine.train.risk_task`), which calls it on the
validation split (threshold) and the temporal test split (report). Baselines see the same
numeric features and split as the model: logistic regression on the standardised,
missing-indicator matrix; LightGBM on the raw values (it handles nulls itself).
Results are `{name: metrics}` dicts that `ecomine.train.reports.report_json` serialises.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MODEL_NAME",
    "binary_metrics",
    "reliability_bins",
    "choose_threshold",
    "decision_report",
    "fit_logistic_regression",
    "fit_lightgbm",
    "write_reliability_plot",
    "format_report",
]

MODEL_NAME = "risk_model"


def binary_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """ROC-AUC, PR-AUC (average precision), Brier, log loss; NaN for the AUCs when one class is absent."""
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    y, p = np.asarray(labels, np.int64), np.clip(np.asarray(probs, np.float64), 0.0, 1.0)
    if len(y) != len(p):
        raise ValueError(f"binary_metrics: {len(y)} labels but {len(p)} probabilities")
    both = len(y) > 0 and 0 < y.sum() < len(y)
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else math.nan,
        "pr_auc": float(average_precision_score(y, p)) if both else math.nan,
        "brier": float(brier_score_loss(y, p)) if len(y) else math.nan,
        "log_loss": float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1])) if len(y) else math.nan,
        "n": int(len(y)),
        "positives": int(y.sum()),
        "mean_probability": float(p.mean()) if len(p) else math.nan,
    }


def reliability_bins(labels: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> dict[str, list[float]]:
    """Quantile-binned reliability curve (mean predicted vs observed rate, count per bin).

    Kept by hand: `sklearn.calibration.calibration_curve(strategy="quantile")` gives the
    same two curves (tested) but not the count per bin, which the report and plot show.
    """
    y, p = np.asarray(labels, np.float64), np.asarray(probs, np.float64)
    if len(p) == 0:
        return {"mean_predicted": [], "fraction_positive": [], "count": []}
    edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)))
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(len(edges) - 2, 0))
    out: dict[str, list[float]] = {"mean_predicted": [], "fraction_positive": [], "count": []}
    for b in np.unique(idx):
        m = idx == b
        out["mean_predicted"].append(float(p[m].mean()))
        out["fraction_positive"].append(float(y[m].mean()))
        out["count"].append(int(m.sum()))
    return out


def choose_threshold(labels: np.ndarray, probs: np.ndarray, *, target_precision: float | None = None,
                     cost_ratio: float | None = None) -> dict[str, Any]:
    """The decision threshold on (validation) probabilities by one rule.

    target_precision: the lowest threshold whose precision reaches the target (so the most
    recall); if none does, the threshold of the highest precision, with `met: False`.
    cost_ratio (false-negative cost / false-positive cost): the threshold minimising
    cost_ratio * FN + FP. Flag when probability >= threshold.
    """
    from sklearn.metrics import precision_recall_curve

    if (target_precision is None) == (cost_ratio is None):
        raise ValueError("choose_threshold: give exactly one of target_precision or cost_ratio")
    y, p = np.asarray(labels, np.int64), np.asarray(probs, np.float64)
    if len(y) == 0 or y.sum() == 0:
        return {"threshold": 0.5, "rule": "default (no positives to choose on)", "met": False}
    precision, recall, thr = precision_recall_curve(y, p)
    # every distinct probability as a threshold, highest first (flag p >= thr); the curve's
    # last point (nothing flagged) has no threshold
    precision, recall, thr = precision[-2::-1], recall[-2::-1], thr[::-1]
    tp = np.rint(recall * y.sum())
    fp = (len(p) - np.searchsorted(np.sort(p), thr, side="left")) - tp  # flagged - true positives
    if target_precision is not None:
        ok = np.flatnonzero(precision >= target_precision)
        if len(ok):
            k = ok[-1]  # lowest threshold still at the target
            return {"threshold": float(thr[k]), "rule": f"target_precision {target_precision}", "met": True,
                    "valid_precision": float(precision[k]), "valid_recall": float(tp[k] / y.sum())}
        k = int(np.argmax(precision))
        return {"threshold": float(thr[k]), "rule": f"target_precision {target_precision}", "met": False,
                "valid_precision": float(precision[k]), "valid_recall": float(tp[k] / y.sum())}
    fn = y.sum() - tp
    cost = cost_ratio * fn + fp
    k = int(np.argmin(cost))
    flag_none = float(cost_ratio * y.sum())
    if flag_none <= cost[k]:  # flagging nothing is cheapest: a threshold above every probability
        return {"threshold": float(np.nextafter(thr[0], np.inf)), "rule": f"cost_ratio {cost_ratio}", "met": True,
                "valid_cost": flag_none}
    return {"threshold": float(thr[k]), "rule": f"cost_ratio {cost_ratio}", "met": True, "valid_cost": float(cost[k]),
            "valid_precision": float(tp[k] / (tp[k] + fp[k])), "valid_recall": float(tp[k] / y.sum())}


def decision_report(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict[str, Any]:
    """sklearn's classification report (dict) and the confusion counts at `threshold`."""
    from sklearn.metrics import classification_report, confusion_matrix

    y = np.asarray(labels, np.int64)
    pred = (np.asarray(probs) >= threshold).astype(np.int64)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    report = classification_report(
        y, pred, labels=[0, 1], target_names=["kept", "returned"], output_dict=True, zero_division=0
    )
    return {"threshold": float(threshold), "tp": int(tp), "fp": int(fp), "fn": int(fn), "tn": int(tn),
            "classification_report": report}


def fit_logistic_regression(x_train: np.ndarray, y_train: np.ndarray, *, seed: int = 0):
    """LR on standardised features + missing indicators (unweighted: its probabilities stay calibrated)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, max_iter=2000, random_state=seed).fit(x_train, y_train)


def fit_lightgbm(x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray, y_valid: np.ndarray, *,
                 seed: int = 0, n_threads: int = 2):
    """LightGBM on the raw features (NaN = missing), early-stopped on the validation split's log loss."""
    import lightgbm as lgb

    model = lgb.LGBMClassifier(
        n_estimators=500, learning_rate=0.05, num_leaves=31, min_child_samples=100, subsample=0.8,
        subsample_freq=1, colsample_bytree=0.8, reg_lambda=1.0, random_state=seed, n_jobs=n_threads, verbose=-1,
    )
    callbacks = [lgb.early_stopping(30, verbose=False)] if len(y_valid) and 0 < y_valid.sum() < len(y_valid) else []
    evals = {"eval_X": (x_valid,), "eval_y": (y_valid,)} if callbacks else {}
    model.fit(x_train, y_train, callbacks=callbacks, **evals)
    return model


def write_reliability_plot(results: dict[str, Any], path: str | Path, *, title: str = "Reliability (test split)") -> Path:
    """PNG of each result's `reliability` bins (predicted vs observed return rate) beside the diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    top = 0.0
    for name, r in results.items():
        for label, rel in ((name, r.get("reliability")), (f"{name} (uncalibrated)", r.get("uncalibrated", {}).get("reliability"))):
            if rel and rel["mean_predicted"]:
                ax.plot(rel["mean_predicted"], rel["fraction_positive"], marker="o", label=label,
                        linestyle="--" if "uncalibrated" in label else "-")
                top = max(top, max(rel["mean_predicted"]), max(rel["fraction_positive"]))
    top = min(1.0, top * 1.05) or 1.0
    ax.plot([0, top], [0, top], color="grey", linewidth=1, label="perfectly calibrated")
    ax.set(xlabel="mean predicted probability", ylabel="observed return rate", title=title, xlim=(0, top), ylim=(0, top))
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def format_report(results: dict[str, Any], title: str | None = "Return risk (temporal holdout)"):
    """A rich table: one row per model/baseline with ROC-AUC, PR-AUC, Brier (+ uncalibrated and decision columns)."""
    from rich.table import Table

    cols = ("roc_auc", "pr_auc", "brier", "log_loss")
    table = Table(title=title)
    table.add_column("model", style="bold", no_wrap=True)
    for c in (*cols, "brier uncal.", "threshold", "precision", "recall"):
        table.add_column(c, justify="right")

    def num(v: Any, fmt: str = ".4f") -> str:
        return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)

    best = {}
    for c in cols:
        vals = [r.get(c) for r in results.values() if isinstance(r.get(c), float) and math.isfinite(r.get(c))]
        if vals:
            best[c] = (min if c in ("brier", "log_loss") else max)(vals)
    for name, r in results.items():
        cells = [f"[bold green]{num(r.get(c))}[/]" if best.get(c) == r.get(c) else num(r.get(c)) for c in cols]
        rep = (r.get("decision") or {}).get("classification_report", {}).get("returned", {})
        cells += [num(r.get("uncalibrated", {}).get("brier")), num((r.get("decision") or {}).get("threshold")),
                  num(rep.get("precision"), ".3f"), num(rep.get("recall"), ".3f")]
        table.add_row(name, *cells)
    any_r = next(iter(results.values()), {})
    table.caption = f"test lines {any_r.get('n', '-')}, positives {any_r.get('positives', '-')}"
    return table
