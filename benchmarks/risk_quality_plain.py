"""Full fine-tuning of the risk model on a GPU box without Ray: the same model as `task: risk`
with `mode: full` (all-MiniLM-L6-v2, mean pooling, LayerNorm, numeric features, MLP head, BCE),
in plain PyTorch with bf16 autocast, on arrays from `export_risk_arrays.py`.

    python benchmarks/risk_quality_plain.py --data risk_or.npz --encoder minilm_fp16/ [--epochs 3]

Prints per epoch the validation ROC-AUC / PR-AUC and samples/s, then the test ROC-AUC, PR-AUC
and Brier (Platt-calibrated on validation) of the best epoch, beside logistic regression on the
numeric features fitted in the same run; writes risk_quality_plain.json under $OUT (or --out).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


class RiskNet(nn.Module):
    def __init__(self, encoder_dir: Path, n_numeric: int, hidden: int = 128, dropout: float = 0.1) -> None:
        from safetensors.torch import load_file
        from transformers import AutoConfig, AutoModel

        super().__init__()
        self.encoder = AutoModel.from_config(AutoConfig.from_pretrained(str(encoder_dir)))
        sd = {k: v.float() for k, v in load_file(str(encoder_dir / "model.safetensors")).items()}
        missing, unexpected = self.encoder.load_state_dict(sd, strict=False)
        assert not [m for m in missing if "position_ids" not in m], missing
        dim = self.encoder.config.hidden_size
        self.text_norm = nn.LayerNorm(dim)
        self.head = nn.Sequential(nn.Linear(dim + n_numeric, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 1))

    def forward(self, ids, num):
        mask = (ids != 0).long()
        h = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return self.head(torch.cat([self.text_norm(pooled.float()), num], 1)).squeeze(-1)


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    return {"roc_auc": float(roc_auc_score(y, p)), "pr_auc": float(average_precision_score(y, p)),
            "brier": float(brier_score_loss(y, p))}


def platt(z_valid: np.ndarray, y_valid: np.ndarray):
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e6, max_iter=1000).fit(z_valid[:, None], y_valid)
    return lambda z: lr.predict_proba(z[:, None])[:, 1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--encoder", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr-encoder", type=float, default=5e-5)
    ap.add_argument("--lr-head", type=float, default=1e-3)
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")))
    ap.add_argument("--limit", type=int, default=None, help="first N lines per split (a smoke run)")
    args = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    z = np.load(args.data)
    meta = json.loads(bytes(z["meta"]).decode())
    ids_all = torch.from_numpy(z["input_ids"].astype(np.int64))
    split = {s: (torch.from_numpy(z[f"{s}_text"][:args.limit]), torch.from_numpy(z[f"{s}_num"][:args.limit].astype(np.float32)),
                 z[f"{s}_y"][:args.limit].astype(np.float32))
             for s in ("train", "valid", "test")}
    n_train, n_pos = len(split["train"][2]), int(split["train"][2].sum())
    print(f"device {dev} ({torch.cuda.get_device_name() if dev.type == 'cuda' else 'cpu'}); train {n_train} lines "
          f"({n_pos} positive), valid {len(split['valid'][2])}, test {len(split['test'][2])}; {meta['text']} text, "
          f"max_length {ids_all.shape[1]}")

    # same-run anchor: logistic regression on the numeric features
    from sklearn.linear_model import LogisticRegression

    t0 = time.perf_counter()
    lr = LogisticRegression(max_iter=2000, C=1.0).fit(split["train"][1].numpy(), split["train"][2])
    zl_v = lr.decision_function(split["valid"][1].numpy())
    zl_t = lr.decision_function(split["test"][1].numpy())
    lr_test = metrics(split["test"][2], platt(zl_v, split["valid"][2])(zl_t))
    print(f"logistic regression (numeric): test {lr_test} ({time.perf_counter() - t0:.1f}s)")

    torch.manual_seed(0)
    model = RiskNet(args.encoder, split["train"][1].shape[1]).to(dev)
    pos_weight = torch.tensor(math.sqrt((n_train - n_pos) / max(n_pos, 1)), device=dev)
    params = [{"params": model.encoder.parameters(), "lr": args.lr_encoder},
              {"params": [*model.text_norm.parameters(), *model.head.parameters()], "lr": args.lr_head}]
    opt = torch.optim.AdamW(params, weight_decay=0.01)
    steps = args.epochs * math.ceil(n_train / args.batch)
    warm = max(1, int(0.05 * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, 1 - s / steps))
    ids_dev = ids_all.to(dev)

    def predict(name: str) -> np.ndarray:
        text, num, _ = split[name]
        model.eval()
        out = []
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            for s in range(0, len(text), 2048):
                out.append(model(ids_dev[text[s:s + 2048].to(dev)], num[s:s + 2048].to(dev)).float().cpu())
        return torch.cat(out).numpy()

    history, best = [], None
    y_train = torch.from_numpy(split["train"][2])
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(n_train)
        t0 = time.perf_counter()
        losses = []
        for s in range(0, n_train, args.batch):
            b = perm[s:s + args.batch]
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                logit = model(ids_dev[split["train"][0][b].to(dev)], split["train"][1][b].to(dev))
            loss = nn.functional.binary_cross_entropy_with_logits(logit.float(), y_train[b].to(dev), pos_weight=pos_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
        if dev.type == "cuda":
            torch.cuda.synchronize()
        secs = time.perf_counter() - t0
        zv = predict("valid")
        val = metrics(split["valid"][2], 1 / (1 + np.exp(-zv)))
        rec = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "seconds": secs, "samples_per_s": n_train / secs, **{f"val_{k}": v for k, v in val.items()}}
        history.append(rec)
        print(json.dumps(rec))
        if best is None or val["pr_auc"] > best[0]:
            best = (val["pr_auc"], epoch + 1, zv, predict("test"))
    _, best_epoch, zv, zt = best
    test = metrics(split["test"][2], platt(zv, split["valid"][2])(zt))
    result = {"best_epoch": best_epoch, "test_calibrated": test, "logistic_regression_test": lr_test,
              "history": history, "meta": meta, "args": {k: str(v) for k, v in vars(args).items()},
              "device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu", "torch": torch.__version__}
    print(f"full fine-tune (best epoch {best_epoch}): test {test}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "risk_quality_plain.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
