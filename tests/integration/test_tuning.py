"""A real Ray Tune campaign over the training path: ASHA, top-k export, results, plot, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from ecomine.registry import Registry
from ecomine.tuning.campaign import run_campaign

pytestmark = pytest.mark.integration

BASE = """
kind: train
data: {kind: synthetic, users: 200, items: 60, days: 120, seed: 2}
optim: {epochs: 3, batch_size: 64, early_stopping: null}
scaling: {num_workers: 1, cpus_per_worker: 1}
run: {registry: REGISTRY}
eval: {ks: [10]}
"""


def _write(tmp_path: Path, name: str, samples: int, concurrent: int, top_k: int, scheduler: str = "asha",
           extra: str = "", seed: int = 1, lr: str = "loguniform 1e-4 3e-2") -> Path:
    (tmp_path / "base.yaml").write_text(BASE.replace("REGISTRY", str(tmp_path / "registry")))
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"""
kind: tune
name: {name}
base: base.yaml
space:
  optim.lr: {lr}
  model.backbone.hidden: choice [16, 32]
  model.backbone.max_len: choice [10, 50]   # the campaign prepares once; trials re-cut their windows
scheduler: {{kind: {scheduler}, grace_period: 1, reduction_factor: 2}}
num_samples: {samples}
max_concurrent: {concurrent}
storage: {tmp_path / "tune_runs"}
export_top_k: {top_k}
seed: {seed}
{extra}""")
    return p


def test_campaign_asha_topk_results_plot(ray_session, tmp_path: Path, capfd) -> None:
    # seed 1 draws (lr, hidden, max_len) = (1e-2, 32, 50), (1e-7, 16, 10): one trial at a time (Tune
    # starts concurrent trials in whatever order their actors come up), so the frozen trial reaches
    # ASHA's first rung after the learning trial recorded there, and is cut (each trial is ~25 s of the suite)
    path = _write(tmp_path, "ci-campaign", samples=2, concurrent=1, top_k=2, extra="ensemble: {top_k: 2}",
                  seed=1, lr="choice [1e-2, 1e-7]")
    out = run_campaign(path)
    assert out.trials == 2
    printed = capfd.readouterr().out  # Ray Tune's own experiment box and hints: not on a user's terminal
    assert "View detailed results" not in printed and "Configuration for experiment" not in printed, printed[-2000:]
    frame = pl.read_parquet(out.results_parquet)
    trials = frame.group_by("trial_id").agg(pl.col("config.optim.lr").first(), pl.col("epoch").max())
    assert sorted(trials["config.optim.lr"].to_list()) == [1e-7, 1e-2], trials  # the seed holds
    frozen = trials.filter(pl.col("config.optim.lr") == 1e-7)["epoch"].to_list()
    assert frozen == [1] and out.stopped_early >= 1, trials  # ASHA cut the frozen trial at its first rung
    # max_concurrent: 1 held (a search generator ignores Tune's own limit): no trial reported while another ran
    spans = frame.group_by("trial_id").agg(pl.col("timestamp").min().alias("first"),
                                           pl.col("timestamp").max().alias("last")).sort("first")
    assert (spans["first"].shift(-1).drop_nulls() >= spans["last"].head(spans.height - 1)).all(), spans
    assert frame.height >= 3 and "val_ndcg@10" in frame.columns
    assert frame["error"].is_null().all(), frame["error"].drop_nulls().to_list()
    assert out.plot_png.stat().st_size > 5_000
    assert len(out.versions) == 2
    versions = Registry(str(tmp_path / "registry")).list("recommend")
    tagged = [v for v in versions if "ci-campaign" in v.tags]
    assert {v.version for v in tagged} == set(out.versions)
    assert all(v.metrics["test"]["all_items"]["NDCG@10"] is not None for v in tagged)
    # the campaign's `ensemble:` block (what `ecomine tune` runs next): its exports as one ensemble version
    from ecomine.ensemble.build import campaign_ensemble
    from ecomine.tuning.campaign import load_campaign

    ens = campaign_ensemble(load_campaign(path), out.versions)
    mv = Registry(str(tmp_path / "registry")).get("recommend", ens.version)
    assert "ensemble" in mv.tags and "ci-campaign" in mv.tags
    assert [m["version"] for m in ens.members] == out.versions


def test_interrupted_campaign_resumes_without_rerunning_finished_trials(ray_session, tmp_path: Path) -> None:
    # FIFO: every trial trains to the end, so "finished" is well defined (ASHA is tested above).
    # 2 trials: the first finishes before the interrupt, the second runs after the resume (each trial is ~30 s of the suite)
    spec = _write(tmp_path, "resume-campaign", samples=2, concurrent=1, top_k=0, scheduler="fifo")
    trials_dir = tmp_path / "tune_runs" / "resume-campaign" / "trials"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # RAY_ADDRESS: the session cluster
    cmd = [sys.executable, "-m", "ecomine.cli.main", "tune", str(spec)]
    log = (tmp_path / "tune.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)

    tune_dir = tmp_path / "tune_runs" / "resume-campaign" / "tune"

    def finished() -> dict[str, int]:
        """{run: epochs trained} of the trials whose last epoch Tune itself has recorded.

        (Our loop can finish before Tune hears of it: Ray Train hands reports to Tune
        asynchronously, so under load a run may be done while Tune holds only epoch 1;
        such a trial resumes from the last checkpoint Tune registered.)
        """
        out = {}
        for result in tune_dir.glob("_trial_fn_*/result.json"):
            trial_id = "_".join(result.parent.name.split("_")[3:5])  # _trial_fn_<exp>_<n>_...
            if any(json.loads(line).get("epoch") == 3 for line in result.read_text().splitlines() if line.strip()):
                progress = trials_dir / f"resume-campaign-{trial_id}" / "progress.jsonl"
                out[progress.parent.name] = progress.read_text().count('"train_loss"')  # epochs trained
        return out

    deadline = time.time() + 300
    while len(finished()) < 1 and time.time() < deadline and proc.poll() is None:
        time.sleep(1)
    before = finished()
    assert len(before) >= 1, "campaign did not finish a trial in time:\n" + (tmp_path / "tune.log").read_text()[-3000:]
    proc.send_signal(signal.SIGINT)  # Tune saves its state and stops
    proc.wait(timeout=120)
    r = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    after = finished()
    for run, epochs in before.items():
        # A trial Tune had not yet marked finished when interrupted is restarted, but
        # its Train run resumes from the final checkpoint: no epoch is trained twice.
        assert after[run] == epochs, f"finished trial {run} trained again"
    results = pl.read_parquet(tmp_path / "tune_runs" / "resume-campaign" / "results.parquet")
    assert results["trial_id"].n_unique() == 2  # the rest ran after the resume


def test_a_stopped_runs_placement_group_is_freed(ray_session, tmp_path: Path) -> None:
    import ray
    from ray.util.placement_group import placement_group, placement_group_table

    from ecomine.tuning.campaign import free_run_placement_groups

    pg = placement_group([{"CPU": 0.01}])
    ray.get(pg.ready(), timeout=60)
    run = tmp_path / "campaign-trial1"
    run.mkdir()
    (run / "progress.jsonl").write_text(json.dumps({"placement_group": pg.id.hex()}) + "\n" + json.dumps({"epoch": 1}) + "\n")
    assert free_run_placement_groups(run) == [pg.id.hex()]
    assert placement_group_table(pg)["state"] == "REMOVED"
    assert free_run_placement_groups(run) == []  # already gone: nothing to do
    assert free_run_placement_groups(tmp_path / "no-such-run") == []
