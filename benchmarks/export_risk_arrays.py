"""Export the Online Retail risk split as arrays for a GPU box without Ray or polars.

    python benchmarks/export_risk_arrays.py --out bench_data/risk_or.npz [--neg-share 0.5] [--max-length 48]

Runs the risk task's own `prepare` (same examples, temporal holdout, numeric scaling and
text serialisation as `ecomine train` with task: risk) with `mode: full`, so the unique
texts come tokenised, and writes one compressed npz: token ids (uint16) of the texts the
kept lines use, per split the text row / scaled numeric features (float16) / labels, and
the training rows (all positives, a seeded share of negatives). Then, on the GPU box:

    python benchmarks/risk_quality_plain.py --data risk_or.npz --encoder minilm_fp16/

(`--encoder` a folder with config.json and model.safetensors; `--save-encoder DIR` here
writes the packaged all-MiniLM-L6-v2 in float16 to carry along.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from risk_online_retail import ONLINE_RETAIL_RISK  # noqa: E402 (the benchmarks folder is on the path just above)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench_data/risk_or.npz"))
    ap.add_argument("--neg-share", type=float, default=0.5, help="share of training negatives kept")
    ap.add_argument("--max-length", type=int, default=48)
    ap.add_argument("--text", default="line", choices=["line", "item"])
    ap.add_argument("--save-encoder", type=Path, default=None, help="also write the default encoder in fp16 here")
    args = ap.parse_args()

    from ecomine.specs import TrainSpec
    from ecomine.train.risk_task import prepare_risk_data

    spec = TrainSpec.model_validate({
        "task": "risk", "data": {"kind": "spec", "spec": "online-retail"},
        "model": {"mode": "full", "text": args.text, "max_length": args.max_length, "horizon_days": 60,
                  "negative_sample": args.neg_share, "split": ONLINE_RETAIL_RISK["model"]["split"]},
    })
    t0 = time.perf_counter()
    d = prepare_risk_data(spec)
    print(f"prepared in {time.perf_counter() - t0:.0f}s: train {len(d.train)} (kept {len(d.train_index)}), "
          f"valid {len(d.valid)}, test {len(d.test)}, unique texts {len(d.texts)}; windows {d.windows}")
    used = np.unique(np.concatenate([d.train.text_idx[d.train_index], d.valid.text_idx, d.test.text_idx]))
    remap = np.full(len(d.texts), -1, np.int64)
    remap[used] = np.arange(len(used))
    ids = d.input_ids[used]
    assert ids.max() < 65536
    arrays = {
        "input_ids": ids.astype(np.uint16),
        "train_text": remap[d.train.text_idx[d.train_index]], "train_num": d.train.numeric[d.train_index].astype(np.float16),
        "train_y": d.train.labels[d.train_index].astype(np.uint8),
        "valid_text": remap[d.valid.text_idx], "valid_num": d.valid.numeric.astype(np.float16),
        "valid_y": d.valid.labels.astype(np.uint8),
        "test_text": remap[d.test.text_idx], "test_num": d.test.numeric.astype(np.float16),
        "test_y": d.test.labels.astype(np.uint8),
    }
    meta = {"windows": d.windows, "neg_share": args.neg_share, "max_length": args.max_length, "text": args.text,
            "logit_offset_for_sampling": float(np.log(args.neg_share)), "fingerprint": d.fingerprint,
            "example_text": d.texts[int(d.test.text_idx[0])]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB); example text: {meta['example_text']!r}")
    if args.save_encoder:
        import shutil

        import torch
        from safetensors.torch import load_file, save_file

        src = Path(d.encoder)
        args.save_encoder.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / "config.json", args.save_encoder / "config.json")
        sd = {k: v.to(torch.float16).contiguous() for k, v in load_file(str(src / "model.safetensors")).items()}
        save_file(sd, str(args.save_encoder / "model.safetensors"))
        print(f"wrote {args.save_encoder} (fp16 encoder)")


if __name__ == "__main__":
    main()
