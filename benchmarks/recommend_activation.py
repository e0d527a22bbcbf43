"""GPT-2's GELU as transformers' `gelu_new` (five tensor ops) vs torch's fused tanh GELU, in one run.

Beside the flow, not in it: why `SequentialRecommender` builds its GPT-2 with
`activation_function="gelu_pytorch_tanh"` (the same tanh-approximated formula). The shipped model
(`recommend_small`, a 12,101-item catalogue, short left-padded windows) is timed with each activation
swapped into its blocks, interleaved over rounds because this machine is noisy: training steps
(the shipped loss, AdamW) in windows/s and scoring (`model.score`, what serving and `ecomine score` run) in
histories/s. Prints the medians, their ratios and the load average; figures are never asserted.

Run:  python benchmarks/recommend_activation.py [--rounds 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import numpy as np
    import torch
    from transformers.activations import ACT2FN

    from ecomine.models.recommend import SequentialRecommender
    from ecomine.models.recommend_config import recommend_small

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = SequentialRecommender(recommend_small(12_101))
    ids = torch.tensor(rng.integers(1, 12_101, size=(128, 50)))
    ids[:, :35] = 0  # short sequences: 15 real items a window
    targets = torch.roll(ids, -1, 1)
    targets[:, -1] = 5
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    histories = [rng.integers(1, 12_101, size=int(n)) for n in rng.integers(1, 50, size=256)]

    def use(name: str) -> None:
        for block in model.backbone.h:
            block.mlp.act = ACT2FN[name]

    def train(steps: int = 20) -> float:
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = model.loss(ids, targets)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return steps * len(ids) / (time.perf_counter() - t0)

    def score(calls: int = 10) -> float:
        t0 = time.perf_counter()
        for _ in range(calls):
            model.score(histories)
        return calls * len(histories) / (time.perf_counter() - t0)

    arms = ("gelu_new", "gelu_pytorch_tanh")
    figures: dict[str, dict[str, list[float]]] = {a: {"train": [], "score": []} for a in arms}
    train(3)  # warm-up
    for _ in range(args.rounds):
        for arm in arms:
            use(arm)
            figures[arm]["train"].append(train())
            figures[arm]["score"].append(score())
    for what, unit in (("train", "windows/s"), ("score", "histories/s")):
        med = {a: float(np.median(figures[a][what])) for a in arms}
        print(f"{what:5s}  gelu_new {med['gelu_new']:7.0f} {unit}   gelu_pytorch_tanh {med['gelu_pytorch_tanh']:7.0f}"
              f"   ratio {med['gelu_pytorch_tanh'] / med['gelu_new']:.2f}x")
    print("load average:", " ".join(f"{x:.2f}" for x in os.getloadavg()), f"(torch threads {args.threads})")


if __name__ == "__main__":
    main()
