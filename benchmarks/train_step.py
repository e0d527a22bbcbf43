"""Training-step throughput: the shipped recommender step vs a minimal hand-written PyTorch step.

Beside the flow, not in it. At two shapes, in one run, on the same batches:

  shipped   `ecomine.train.loop.train_step` on `SequentialRecommender` (the loss projects only the
            positions that have a target; repeat channel; grad clipping; lr schedule) - what
            `ecomine train` runs per batch
  plain     what a user would write by hand: nn.Embedding + the same GPT-2 stack + logits at the
            target positions + cross-entropy + AdamW (no repeat channel, no clipping, no schedule)
  every-pos the loss as shipped before: catalogue logits at every window position, padding included
            (a few steps only: it is the slow one)

Shapes: `online-retail` (the real sequences of the shared files, cut as `ecomine bench quality`
cuts them) and `short` (generated: sequences of 5-20 items over a 12,101-item Zipf catalogue,
almost no repeats). Prints samples/s (training windows per second) and the shipped/plain ratio
(target >= 0.90), the median over interleaved rounds because this machine is noisy; the load
average is printed beside every figure.

With `--losses 12101,50000,100000`: the shipped step under the full and the sampled softmax on short
sequences over catalogues of those sizes (what `loss: auto`'s 50,000-item threshold rests on).

Run:  python benchmarks/train_step.py                       # both shapes, 1 thread
      python benchmarks/train_step.py --losses 12101,50000,100000 --steps 5 --json benchmarks/results/train_step_losses.json
      python benchmarks/train_step.py --shapes short --threads 2 --json benchmarks/results/train_step.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TARGET = 0.90

__all__ = ["short_sequences", "online_retail_windows", "bench_shape", "bench_losses", "main"]


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def short_sequences(*, users: int = 20_000, items: int = 12_101, seed: int = 0) -> list[np.ndarray]:
    """Short sessions over a large catalogue: 5-20 distinct items each, Zipf popularity, no repeats."""
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, items + 1) ** 0.8
    pop /= pop.sum()
    out = []
    for n in rng.integers(5, 21, users):
        out.append(rng.choice(items, size=n, replace=False, p=pop).astype(np.int64) + 1)
    return out


def online_retail_windows(max_len: int) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(inputs, targets, n_items) of the Online Retail quality benchmark's training split, or None without ../shared."""
    from ecomine.specs import TrainSpec, load_spec
    from ecomine.train.recommend_task import TASK

    if not (ROOT.parent / "shared" / "data" / "online_retail").exists():
        return None
    spec = load_spec(HERE / "recommend_online_retail.yaml", TrainSpec)
    prepared = TASK.prepare(spec)
    from ecomine.models.recommend import training_windows

    x, y = training_windows(prepared.data.train_sequences, max_len)
    return x, y, prepared.data.n_items


def _plain_model(config):
    """The hand-written model: an embedding table, the same GPT-2 stack, tied output weights."""
    import torch
    from torch import nn
    from transformers import GPT2Config, GPT2Model

    class Plain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(config.n_items + 1, config.hidden)
            self.gpt = GPT2Model(GPT2Config(
                vocab_size=1, n_positions=config.max_len, n_embd=config.hidden, n_layer=config.layers,
                n_head=config.heads, resid_pdrop=config.dropout, embd_pdrop=config.dropout,
                attn_pdrop=config.dropout, use_cache=False, bos_token_id=0, eos_token_id=0,
            ))

        def forward(self, ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            h = self.gpt(inputs_embeds=self.emb(ids), attention_mask=(ids != 0).long()).last_hidden_state
            keep = targets != 0
            return nn.functional.cross_entropy(h[keep] @ self.emb.weight.T, targets[keep])

    return Plain()


def _every_position_loss(model, ids, targets):
    """The loss as shipped before the gather: [B, T, V] logits, padding included."""
    from torch import nn

    logits = model.logits(ids, mask_pad=False)
    return nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1), ignore_index=0)


def _timed(step, batches) -> float:
    t0 = time.perf_counter()
    for b in batches:
        step(b)
    return sum(len(b["ids"]) for b in batches) / (time.perf_counter() - t0)


def _spec(**overrides: Any):
    """train_configs/recommend.yaml with `overrides` (dotted paths, as `--set` takes them). `backbone.dropout`
    and `backbone.max_len` get numbers: the shipped `auto`s resolve on the training data, which a step benchmark
    does not build (dropout 0.5 on sparse logs like the short sessions, 0.3 on Online Retail; the context is the
    windows' width, 50 unless a shape's windows say otherwise)."""
    from ecomine.specs import TrainSpec, load_spec

    return load_spec(ROOT / "train_configs" / "recommend.yaml", TrainSpec,
                     overrides={"model.backbone.max_len": 50, **overrides})


def bench_shape(name: str, inputs: np.ndarray, targets: np.ndarray, n_items: int, *, steps: int, rounds: int,
                legacy_steps: int, batch_size: int) -> dict[str, Any]:
    import torch

    from ecomine.models.recommend import SequentialRecommender
    from ecomine.train.loop import lr_lambda, train_step
    from ecomine.train.recommend_task import recommender_config

    spec = _spec(**{"model.backbone.dropout": 0.3 if name == "online-retail" else 0.5,
                    "model.backbone.max_len": int(inputs.shape[1])})
    opt = spec.optim
    config = recommender_config(spec, n_items)
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(steps):
        idx = rng.choice(len(inputs), batch_size, replace=False)
        batches.append({"ids": torch.from_numpy(inputs[idx]), "targets": torch.from_numpy(targets[idx])})
    real = float(np.mean([(b["targets"] != 0).float().mean().item() for b in batches]))

    torch.manual_seed(0)
    shipped = SequentialRecommender(config).train()
    params = [p for p in shipped.parameters() if p.requires_grad]
    s_opt = torch.optim.AdamW(params, lr=opt.lr, weight_decay=opt.weight_decay)
    s_sched = torch.optim.lr_scheduler.LambdaLR(s_opt, lr_lambda(opt.schedule, 10, 10_000))
    scaler = torch.amp.GradScaler("cuda", enabled=False)

    def shipped_step(b):
        train_step(shipped, b, s_opt, s_sched, scaler, params, grad_clip=opt.grad_clip, device_type="cpu", amp_dtype=None)

    torch.manual_seed(0)
    plain = _plain_model(config).train()
    p_opt = torch.optim.AdamW(plain.parameters(), lr=opt.lr, weight_decay=opt.weight_decay)

    def plain_step(b):
        loss = plain(**b)
        p_opt.zero_grad(set_to_none=True)
        loss.backward()
        p_opt.step()

    def legacy_step(b):
        loss = _every_position_loss(shipped, b["ids"], b["targets"])
        s_opt.zero_grad(set_to_none=True)
        loss.backward()
        s_opt.step()

    _timed(shipped_step, batches[:2])  # warm-up: allocator, thread pool
    _timed(plain_step, batches[:2])
    rows = []
    for r in range(rounds):
        load = _load()
        p = _timed(plain_step, batches)
        s = _timed(shipped_step, batches)
        rows.append({"round": r, "plain": p, "shipped": s, "ratio": s / p, "load": load})
        print(f"  {name} round {r}: plain {p:8.1f}/s  shipped {s:8.1f}/s  ratio {s / p:.3f}   (load {load})", flush=True)
    legacy = _timed(legacy_step, batches[:legacy_steps]) if legacy_steps else float("nan")
    ratio = statistics.median(r["ratio"] for r in rows)
    return {
        "shape": name, "windows": int(len(inputs)), "n_items": n_items, "max_len": int(inputs.shape[1]),
        "batch_size": batch_size, "real_position_share": real, "steps_per_round": steps, "rounds": rows,
        "plain_per_s": statistics.median(r["plain"] for r in rows),
        "shipped_per_s": statistics.median(r["shipped"] for r in rows),
        "every_position_per_s": legacy, "ratio": ratio, "target": TARGET, "met": ratio >= TARGET,
    }


def bench_losses(catalogues: list[int], *, steps: int, batch_size: int) -> list[dict[str, Any]]:
    """The shipped step under `loss: full_softmax` and `sampled_softmax` (the spec's `num_negatives`) on short
    sequences over catalogues of each size: what `loss: auto`'s threshold (FULL_SOFTMAX_MAX_ITEMS) rests on."""
    import torch

    from ecomine.models.recommend import SequentialRecommender, training_windows
    from ecomine.train.loop import lr_lambda, train_step
    from ecomine.train.recommend_task import FULL_SOFTMAX_MAX_ITEMS, recommender_config, resolved_loss

    out = []
    for n_items in catalogues:
        x, y = training_windows(short_sequences(users=4_000, items=n_items), 50)
        rng = np.random.default_rng(0)
        batches = []
        for _ in range(steps):
            idx = rng.choice(len(x), batch_size, replace=False)
            batches.append({"ids": torch.from_numpy(x[idx]), "targets": torch.from_numpy(y[idx])})
        row: dict[str, Any] = {"n_items": n_items, "auto": resolved_loss("auto", n_items),
                               "threshold": FULL_SOFTMAX_MAX_ITEMS, "load": _load()}
        for loss in ("sampled_softmax", "full_softmax"):
            spec = _spec(**{"model.backbone.dropout": 0.5, "model.loss": loss})
            torch.manual_seed(0)
            model = SequentialRecommender(recommender_config(spec, n_items)).train()
            params = [p for p in model.parameters() if p.requires_grad]
            opt = torch.optim.AdamW(params, lr=spec.optim.lr)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda("constant", 0, 1))
            scaler = torch.amp.GradScaler("cuda", enabled=False)

            def step(b):  # called within this iteration only
                train_step(model, b, opt, sched, scaler, params, grad_clip=None, device_type="cpu", amp_dtype=None)

            step(batches[0])  # warm-up
            row[f"{loss}_per_s"] = _timed(step, batches)
        row["full_over_sampled_s"] = row["sampled_softmax_per_s"] / row["full_softmax_per_s"]
        print(f"  {n_items:>7} items: sampled {row['sampled_softmax_per_s']:8.1f}/s  full {row['full_softmax_per_s']:8.1f}/s"
              f"  a full step costs {row['full_over_sampled_s']:.1f}x; auto -> {row['auto']}   (load {row['load']})", flush=True)
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default="online-retail,short", help="comma-separated: online-retail, short")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (a 1-CPU Train worker uses 1)")
    ap.add_argument("--steps", type=int, default=20, help="batches per timed round")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved plain/shipped rounds (median reported)")
    ap.add_argument("--legacy-steps", type=int, default=3, help="steps of the every-position loss (0: skip)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--losses", default="", help="comma-separated catalogue sizes (e.g. 12101,50000,100000): time the "
                    "full and the sampled softmax step on short sequences over each instead of the shapes")
    a = ap.parse_args(argv)
    import torch

    from ecomine.models.recommend import training_windows

    torch.set_num_threads(a.threads)
    print(f"train_step: threads {a.threads}, batch {a.batch_size}, {a.steps} steps x {a.rounds} rounds, "
          f"load {_load()}", flush=True)
    if a.losses:
        rows = bench_losses([int(n) for n in a.losses.split(",")], steps=a.steps, batch_size=a.batch_size)
        print(f"load average after: {_load()}")
        if a.json:
            a.json.write_text(json.dumps({"threads": a.threads, "batch_size": a.batch_size, "losses": rows}, indent=2))
        return 0
    results = []
    for shape in [s.strip() for s in a.shapes.split(",") if s.strip()]:
        if shape == "short":
            x, y = training_windows(short_sequences(), 50)
            n_items = 12_101
        elif shape == "online-retail":
            got = online_retail_windows(50)
            if got is None:
                print("  online-retail: skipped, ../shared/data/online_retail is absent")
                continue
            x, y, n_items = got
        else:
            raise SystemExit(f"--shapes: {shape!r} is not one of online-retail, short")
        results.append(bench_shape(shape, x, y, n_items, steps=a.steps, rounds=a.rounds,
                                   legacy_steps=a.legacy_steps, batch_size=a.batch_size))
    print()
    print(f"{'shape':<14}{'items':>7}{'real pos':>9}{'plain/s':>10}{'shipped/s':>11}{'every-pos/s':>13}{'ratio':>8}")
    for r in results:
        print(f"{r['shape']:<14}{r['n_items']:>7}{r['real_position_share']:>9.2f}{r['plain_per_s']:>10.1f}"
              f"{r['shipped_per_s']:>11.1f}{r['every_position_per_s']:>13.1f}{r['ratio']:>8.3f}"
              f"  {'met' if r['met'] else 'MISSED'} (target >= {TARGET})")
    print(f"load average after: {_load()}")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"threads": a.threads, "load_after": _load(), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
