"""Issue-6 benchmark: a 12-trial recommend campaign on Online Retail vs the default TrainSpec,
and the campaign's top-3 as an ensemble vs its best single model.

    python benchmarks/tune_recommend_online_retail.py [--out bench_out/tune_or] [--trials 12]

Runs, in one local Ray (3 logical CPUs: one 2-CPU Train worker + the trial driver):
1. the campaign `tune/recommend_online_retail.yaml` (ASHA, random search; its registry and
   storage redirected under --out), which registers its top-3 trials;
2. the default TrainSpec (the campaign's base with the same epoch budget, no search);
3. the top-3 as an ensemble scored like the Serve ensemble does (weighted mean of the
   members' softmax probabilities), on the same test split.
Prints test NDCG@10 / HR@10 / MRR (all-items protocol) of each and the ratios; writes
`tune_recommend_online_retail.json` under --out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
CAMPAIGN = ROOT / "tune" / "recommend_online_retail.yaml"


class EnsembleScorer:
    """log of the mean softmax over members (the Serve ensemble's combination, uniform weights)."""

    def __init__(self, models) -> None:
        self.models = models

    def score(self, histories):
        probs = None
        for m in self.models:
            logits = m.score(histories)
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            probs = p if probs is None else probs + p
        return np.log(probs / len(self.models) + 1e-12)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench_out/tune_or"))
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=None, help="override the campaign's epochs per trial")
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    import ray
    from rich.console import Console

    from ecomine.registry import Registry
    from ecomine.specs import TrainSpec
    from ecomine.train.recommend_eval import MODEL_NAME
    from ecomine.train.recommend_metrics import evaluate_scorer
    from ecomine.train.recommend_task import TASK
    from ecomine.train.runner import run_training
    from ecomine.tuning.campaign import apply_overrides, load_campaign, run_campaign
    from ecomine.models.recommend import load_recommender

    console = Console()
    raw = yaml.safe_load(CAMPAIGN.read_text())
    raw["base"] = str((CAMPAIGN.parent / raw["base"]).resolve())
    raw["storage"] = str(out / "tune_runs")
    raw["num_samples"] = args.trials
    raw["overrides"]["run.registry"] = str(out / "registry")
    raw["overrides"]["run.storage"] = str(out / "runs")
    if args.epochs:
        raw["overrides"]["optim.epochs"] = args.epochs
    spec_path = out / "campaign.yaml"
    spec_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    campaign = load_campaign(spec_path)

    ray.init(address="local", num_cpus=3, configure_logging=False, log_to_driver=False)
    t0 = time.perf_counter()
    outcome = run_campaign(spec_path, console=console)
    t_campaign = time.perf_counter() - t0
    console.print(f"campaign: {outcome.trials} trials, {outcome.stopped_early} stopped early, {t_campaign:.0f} s")

    # the default TrainSpec: the base as written, same epoch budget, same data
    data = TASK.prepare(campaign.base)
    default = TrainSpec.model_validate(apply_overrides(campaign.base.model_dump(mode="json"), {
        "run.name": "default-spec", "run.register_model": False,
    }))
    t1 = time.perf_counter()
    d_out = run_training(default, data=data, console=console)
    t_default = time.perf_counter() - t1

    reg = Registry(out / "registry")
    singles, models = {}, []
    for v in outcome.versions:
        mv = reg.get("recommend", v)
        model, vocab = load_recommender(reg.fetch("recommend", v))
        assert vocab.items == data.data.vocab_items
        models.append(model)
        singles[v] = evaluate_scorer(model, data.data.test_histories, data.data.test_targets,
                                     n_items=data.data.n_items + 1, ks=[10], pad_id=0)["all_items"]
        singles[v]["config"] = {k: mv.spec["model"]["backbone"][k.split(".")[-1]] for k in ("layers", "hidden", "max_len")}
        singles[v]["lr"] = mv.spec["optim"]["lr"]
    ens = evaluate_scorer(EnsembleScorer(models), data.data.test_histories, data.data.test_targets,
                          n_items=data.data.n_items + 1, ks=[10], pad_id=0)["all_items"] if len(models) >= 2 else None
    best_v = max(singles, key=lambda v: singles[v]["NDCG@10"])
    default_m = d_out.results[MODEL_NAME]["all_items"]
    rows = [("default TrainSpec", default_m)] + [(f"trial {v}", m) for v, m in singles.items()]
    if ens:
        rows.append((f"ensemble top-{len(models)}", ens))
    from rich.table import Table

    table = Table(title="Online Retail recommend: test split, all-items protocol")
    for c in ("model", "NDCG@10", "HR@10", "MRR"):
        table.add_column(c, justify="right" if c != "model" else "left")
    for name, m in rows:
        table.add_row(name, f"{m['NDCG@10']:.4f}", f"{m['HR@10']:.4f}", f"{m['MRR']:.4f}")
    console.print(table)
    best = singles[best_v]["NDCG@10"]
    summary = {
        "campaign_seconds": t_campaign, "default_seconds": t_default, "trials": outcome.trials,
        "stopped_early": outcome.stopped_early, "default": default_m, "top": singles,
        "ensemble": ens, "best_single": best_v,
        "ratio_best_vs_default": best / default_m["NDCG@10"],
        "ratio_ensemble_vs_best": (ens["NDCG@10"] / best) if ens else None,
    }
    console.print(f"best trial / default NDCG@10 = {summary['ratio_best_vs_default']:.3f}; "
                  + (f"ensemble / best single = {summary['ratio_ensemble_vs_best']:.3f}" if ens else "no ensemble"))
    (out / "tune_recommend_online_retail.json").write_text(json.dumps(summary, indent=2, default=float))
    ray.shutdown()


if __name__ == "__main__":
    main()
