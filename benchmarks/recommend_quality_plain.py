"""The recommender's quality on exported arrays, trained in plain PyTorch (CPU or GPU, optional bf16/fp16).

For machines without Ray or polars (a lent GPU box): the same model
(`ecomine.models.recommend`), optimiser and schedule as the Ray Train loop, the
same full-catalogue evaluation and baselines (`ecomine.train.recommend_metrics`,
`ecomine.models.recommend_baselines`). Prints the report table and writes JSON.

Usage: python benchmarks/recommend_quality_plain.py --data data.npz --epochs 40 [--precision bf16] [--out report.json]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

from ecomine.models.recommend import SequentialRecommender, recommend_small
from ecomine.models.recommend_baselines import fit_baselines
from ecomine.train.reports import report_json
from ecomine.train.recommend_metrics import evaluate_scorer


def split(flat: np.ndarray, lens: np.ndarray) -> list[np.ndarray]:
    return np.split(flat, np.cumsum(lens)[:-1]) if len(lens) else []


class Scorer:
    def __init__(self, model, device):
        self.model, self.device = model, device

    def score(self, histories):
        return self.model.score(histories, device=self.device)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--patience", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    z = np.load(a.data)
    n_items = int(z["n_items"])
    inputs, targets = z["inputs"], z["targets"]
    train = split(z["train"], z["train_len"])
    valid = (split(z["valid_hist"], z["valid_len"]), z["valid_targets"])
    test = (split(z["test_hist"], z["test_len"]), z["test_targets"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    cfg = recommend_small(n_items)
    cfg.hidden, cfg.layers = a.hidden, a.layers
    n_tokens = int(z["n_tokens"]) if "n_tokens" in z else 0  # arrays exported before item tokens have none
    if n_tokens:
        cfg.item_tokens, cfg.max_item_tokens = n_tokens, z["token_index"].shape[1]
    model = SequentialRecommender(cfg)
    if n_tokens:
        model.item_tokens.fill(z["token_index"])
    model = model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
    steps = math.ceil(len(inputs) / a.batch_size)
    total, warm = steps * a.epochs, int(0.05 * steps * a.epochs)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, total - warm))))
    )
    amp = a.precision != "fp32" and device.type == "cuda"
    dtype = torch.bfloat16 if a.precision == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp and dtype == torch.float16)
    best, best_state, bad, history = -1.0, None, 0, []
    X = torch.from_numpy(inputs).to(device)
    Y = torch.from_numpy(targets).to(device)
    t_train = 0.0
    for epoch in range(a.epochs):
        model.train()
        perm = torch.randperm(len(X), device=device)
        t0 = time.perf_counter()
        losses = []
        for s in range(steps):
            idx = perm[s * a.batch_size : (s + 1) * a.batch_size]
            with torch.autocast(device_type=device.type, dtype=dtype, enabled=amp):
                loss = model(X[idx], Y[idx])
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
            sched.step()
            losses.append(loss.detach())
        if device.type == "cuda":
            torch.cuda.synchronize()
        t_train += time.perf_counter() - t0
        model.eval()
        val = evaluate_scorer(Scorer(model, device), *valid, n_items=n_items + 1, ks=[10], pad_id=0)
        v = val["all_items"]["NDCG@10"]
        history.append({"epoch": epoch + 1, "loss": float(torch.stack(losses).float().mean()), "val_ndcg@10": v,
                        "val_new_ndcg@10": val["new_items"]["NDCG@10"]})
        print(json.dumps(history[-1]), flush=True)
        if v > best:
            best, bad = v, 0
            best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
        else:
            bad += 1
            if bad >= a.patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    results = {"ecomine (transformer)": evaluate_scorer(Scorer(model, device), *test, n_items=n_items + 1, ks=[5, 10, 20], pad_id=0)}
    for name, b in fit_baselines(train, n_items + 1, pad_id=0).items():
        results[name] = evaluate_scorer(b, *test, n_items=n_items + 1, ks=[5, 10, 20], pad_id=0)
    out = {"device": str(device), "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
           "precision": a.precision, "epochs_run": len(history), "best_val_ndcg@10": best,
           "train_seconds": t_train, "samples_per_s": len(X) * len(history) / t_train, "history": history,
           "results": report_json(results)}
    for name, r in results.items():
        print(f"{name:24s} all NDCG@10 {r['all_items']['NDCG@10']:.4f}  new NDCG@10 {r['new_items']['NDCG@10']:.4f}  "
              f"all HR@10 {r['all_items']['HR@10']:.4f}  new HR@10 {r['new_items']['HR@10']:.4f}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
