"""Shared by the tests that need a recommender whose answers are not noise: a few seconds of next-item training."""

from __future__ import annotations

import numpy as np

__all__ = ["train_briefly"]


def train_briefly(model, sequences: list[np.ndarray], steps: int, seed: int) -> None:
    import torch

    from ecomine.models.recommend import training_windows

    x, y = training_windows(sequences, model.config.max_len)
    rng = np.random.default_rng(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: more threads only fight over the 2 cores
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        rows = rng.choice(len(x), size=min(64, len(x)), replace=False)
        loss = model.loss(torch.from_numpy(x[rows]), torch.from_numpy(y[rows]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(threads)
    model.eval()
