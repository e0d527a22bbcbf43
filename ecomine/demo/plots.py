"""The demo's pictures: the recommender's training curve and the served demand forecast's band.

Sits in `demo` beside `run`, which calls both after training; matplotlib (Agg) only,
imported when a picture is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_history", "plot_forecast"]


def plot_history(history: list[dict[str, Any]], out: Path) -> None:
    """The recommender's training loss and validation NDCG@10 by epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.plot(epochs, [h["train_loss"] for h in history], marker="o")
    a.set_xlabel("epoch")
    a.set_ylabel("train loss (full-softmax CE)")
    b.plot(epochs, [h.get("val_ndcg@10") for h in history], marker="o", label="all items")
    b.plot(epochs, [h.get("val_new_ndcg@10") for h in history], marker="o", label="new items")
    b.set_xlabel("epoch")
    b.set_ylabel("validation NDCG@10")
    b.legend()
    fig.suptitle("recommender training")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_forecast(state: Any, out: Path, *, titles: dict[str, str], n: int = 3) -> list[str]:
    """The served forecast's p10-p90 band and p50 after the end of the data, for its top items, with the last
    stretch of their history. `state`: the version loaded as serving loads it (`predict.runtime.load_state`:
    an ensemble is its members), answered by serving's own code, so the picture is what `/v1/demand` says."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ecomine.predict.answers import demand_job
    from ecomine.predict.runtime import run_jobs

    forecaster = state.members[0].obj  # members share the panel, its tail and its origin (one data set)
    known = [i for i, ok in zip(forecaster.items, forecaster.known_items(forecaster.items)) if ok]
    tails = {i: forecaster.tail_units[forecaster.items.index(i)] for i in known}
    top = sorted(known, key=lambda i: -float(np.sum(tails[i])))[:n]
    horizon = forecaster.max_horizon
    req = {"item_ids": top, "horizon": horizon, "quantiles": [0.1, 0.5, 0.9]}
    fc = [np.asarray(f["values"]) for f in run_jobs([(state, demand_job(state, req))])[0]["forecasts"]]
    fig, axes = plt.subplots(1, len(top), figsize=(4 * len(top), 3.2), squeeze=False)
    for ax, item, f in zip(axes[0], top, fc):
        hist = tails[item]
        x_hist = np.arange(-len(hist), 0)
        x_fc = np.arange(horizon)
        ax.plot(x_hist, hist, color="0.4", lw=1, label="history")
        ax.fill_between(x_fc, f[0], f[2], alpha=0.3, label="p10-p90")
        ax.plot(x_fc, f[1], lw=1.5, label="p50")
        ax.set_title(f"{item} {titles.get(item, '')[:28]}", fontsize=8)
        ax.set_xlabel(f"periods ({forecaster.freq}) from {forecaster.origin}")
    axes[0][0].set_ylabel("units")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("demand forecast after the end of the data")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return top
