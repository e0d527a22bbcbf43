"""Export a TrainSpec's prepared recommend data as one .npz (for running the model where polars/Ray are absent).

Usage: python benchmarks/export_recommend_arrays.py [--spec benchmarks/recommend_online_retail.yaml] --out data.npz
"""

from __future__ import annotations

import argparse

import numpy as np

from ecomine.specs import TrainSpec, load_spec
from ecomine.train.recommend_task import TASK


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", default="benchmarks/recommend_online_retail.yaml")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    spec = load_spec(a.spec, TrainSpec)
    p = TASK.prepare(spec)
    d = p.data

    def ragged(seqs):
        lens = np.array([len(s) for s in seqs], np.int64)
        return np.concatenate(seqs) if len(seqs) else np.zeros(0, np.int64), lens

    tr, trl = ragged(d.train_sequences)
    vh, vhl = ragged(d.valid_histories)
    th, thl = ragged(d.test_histories)
    tokens = d.item_tokens if spec.model.item_tokens else None  # the item -> text-token table the model reads
    np.savez_compressed(
        a.out, inputs=p.inputs, targets=p.targets, n_items=d.n_items,
        train=tr, train_len=trl, valid_hist=vh, valid_len=vhl, valid_targets=d.valid_targets,
        test_hist=th, test_len=thl, test_targets=d.test_targets,
        n_tokens=tokens.size if tokens is not None else 0,
        token_index=tokens.index if tokens is not None else np.zeros((d.n_items + 1, 1), np.int64),
    )
    print(f"users {d.n_users}, items {d.n_items}, windows {len(p.inputs)}, valid {len(d.valid_targets)}, test {len(d.test_targets)} -> {a.out}")


if __name__ == "__main__":
    main()
