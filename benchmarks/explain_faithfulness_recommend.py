"""Recommend explanations (issue 15): how faithful and how costly, on Online Retail and on a second shape.

    python benchmarks/explain_faithfulness_recommend.py [--steps 400] [--users 200] [--json out.json]

For each data set, a SequentialRecommender (recommend_small) gets `--steps` AdamW steps of
next-item training (a plain loop: the figure is about the explanation, not the training),
then for `--users` held-out test users the served code path (`serve.explain.explain_recommend`
on a `ModelState`, no Ray) explains their top recommendation. Faithfulness: re-score the
history without the top-attributed history item and without a random other one; the top
one must lower the recommended item's score more (issue 15's bar: >= 80 % of cases).
Occlusion is exact by construction, so the figure mostly checks the plumbing (window,
duplicates, ensemble mixing); the ties it reports are history items that move nothing.
Cost: in-process ms per call of the plain answer vs the explained one (median of the users).

Data: Online Retail from ../shared (skipped with a message when absent) and the synthetic
generator at a short-session, large-catalogue shape (5,000 items, ~6 purchases per user).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPES = {
    "online-retail": {"kind": "spec", "spec": "online-retail"},
    "short-sessions-5k-items": {"kind": "synthetic", "users": 3000, "items": 5000, "days": 60, "seed": 3},
}


def _train(model, sequences: list[np.ndarray], steps: int, seed: int) -> float:
    import torch

    from ecomine.models.recommend import training_windows

    x, y = training_windows(sequences, model.config.max_len)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    model.train()
    t0 = time.perf_counter()
    for _ in range(steps):
        rows = rng.choice(len(x), size=min(128, len(x)), replace=False)
        loss = model.loss(torch.from_numpy(x[rows]), torch.from_numpy(y[rows]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return time.perf_counter() - t0


def run_shape(name: str, data_ref: dict, steps: int, n_users: int, seed: int) -> dict:
    import torch

    from ecomine.models.recommend import ItemVocab, SequentialRecommender, recommend_small
    from ecomine.predict.answers import finish_recommend, plan_recommend
    from ecomine.predict.explain import explain_recommend
    from ecomine.predict.runtime import Member, build_state, run_jobs
    from ecomine.specs import TrainSpec
    from ecomine.train.events import load_training_events
    from ecomine.train.recommend_data import prepare_recommend_data

    spec = TrainSpec.model_validate({"data": data_ref, "optim": {"epochs": 1}})
    events, fingerprint = load_training_events(spec.data)
    data = prepare_recommend_data(spec, events, fingerprint)
    torch.manual_seed(seed)
    model = SequentialRecommender(recommend_small(data.n_items))
    train_s = _train(model, [s for s in data.train_sequences if len(s) >= 2], steps, seed)
    vocab = ItemVocab(items=data.vocab_items, texts=data.vocab_texts)
    state = build_state("recommend", [Member("bench", "bench", 1.0, datetime.now(timezone.utc), [], (model, vocab), {})])
    items = vocab.items
    rng = random.Random(seed)
    candidates = [h for h in data.test_histories if len(set(h[-model.config.max_len:].tolist())) >= 3]
    chosen = rng.sample(candidates, min(n_users, len(candidates)))

    def plain(history: list[str]):
        job, ctx = plan_recommend(state, {"history": history, "k": 10, "exclude_history": False})
        row = run_jobs([(state, job)])[0]
        return finish_recommend(state, ctx, row), row

    wins = ties = cases = 0
    plain_ms, explain_ms, tried = [], [], []
    for ids in chosen:
        history = vocab.decode(ids.tolist())
        t0 = time.perf_counter()
        _, row = plain(history)
        plain_ms.append((time.perf_counter() - t0) * 1000)
        job, ctx = plan_recommend(state, {"history": history, "k": 10, "exclude_history": False})
        t0 = time.perf_counter()
        answer, _ = explain_recommend(state, ctx, job, {})
        explain_ms.append((time.perf_counter() - t0) * 1000)
        tried.append(int(answer["explanation"].split("(")[1].split()[0]))
        top = answer["items"][0]
        if not top["because"]:
            continue
        col = items.index(top["item_id"]) + 1
        named = top["because"][0]["item_id"]
        others = sorted(set(history[-model.config.max_len:]) - {named})
        other = rng.choice(others)
        drop_top = row[col] - plain([h for h in history if h != named])[1][col]
        drop_rnd = row[col] - plain([h for h in history if h != other])[1][col]
        cases += 1
        wins += int(drop_top > drop_rnd)
        ties += int(drop_top == drop_rnd)
    return {
        "shape": name, "users": int(data.n_users), "items": int(data.n_items), "train_steps": steps, "train_s": round(train_s, 1),
        "explained": len(chosen), "with_a_positive_contributor": cases,
        "top_beats_random": wins, "ties": ties, "rate": round(wins / cases, 4) if cases else None,
        "history_items_tried_median": float(statistics.median(tried)) if tried else None,
        "plain_ms_p50": round(statistics.median(plain_ms), 2), "explain_ms_p50": round(statistics.median(explain_ms), 2),
        "explain_over_plain": round(statistics.median(explain_ms) / statistics.median(plain_ms), 2),
    }


def main(argv: list[str] | None = None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shapes", nargs="*", default=list(SHAPES))
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    results = []
    for name in args.shapes:
        if name == "online-retail" and not (ROOT.parent / "shared" / "data" / "online_retail").exists():
            print(f"{name}: skipped (../shared/data/online_retail is absent)")
            continue
        r = run_shape(name, SHAPES[name], args.steps, args.users, args.seed)
        r["loadavg"] = Path("/proc/loadavg").read_text().split()[:3]
        results.append(r)
        print(json.dumps(r))
    print(f"\n{'shape':<26} {'top>random':>12} {'rate':>6} {'ties':>5} {'plain ms':>9} {'explain ms':>11} {'ratio':>6}  load")
    for r in results:
        print(f"{r['shape']:<26} {r['top_beats_random']:>5}/{r['with_a_positive_contributor']:<6} {r['rate']:>6} "
              f"{r['ties']:>5} {r['plain_ms_p50']:>9} {r['explain_ms_p50']:>11} {r['explain_over_plain']:>6}  {' '.join(r['loadavg'])}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
