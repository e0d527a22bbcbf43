"""Ray Train path end to end on the synthetic log: train, checkpoint, evaluate, register,
recover from a worker failure, resume an interrupted run, refuse bad specs before Ray runs."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from ecomine.registry import Registry
from ecomine.specs import SpecError, TrainSpec
from ecomine.specs.train import EarlyStoppingSpec
from ecomine.train.recommend_task import TASK
from ecomine.train.recommend_eval import MODEL_NAME
from ecomine.train.runner import run_training

pytestmark = pytest.mark.integration

DATA = {"kind": "synthetic", "users": 300, "items": 80, "days": 150, "seed": 3}


def make_spec(tmp_path: Path, **run) -> TrainSpec:
    return TrainSpec.model_validate({
        "data": DATA,
        "optim": {"epochs": run.pop("epochs", 4), "batch_size": 64, "lr": 3e-3, "early_stopping": None,
                  "ema_epochs": run.pop("ema_epochs", None)},
        "scaling": {"num_workers": run.pop("num_workers", 1)},
        "run": {"storage": str(tmp_path / "runs"), "registry": str(tmp_path / "registry"), **run},
        "eval": {"ks": [10]},
    })


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return TASK.prepare(make_spec(tmp_path_factory.mktemp("d")))


def test_two_workers_train_evaluate_register(ray_session, tmp_path: Path, data) -> None:
    spec = make_spec(tmp_path, name="two-workers", num_workers=2, tags=["ci"])
    local = lambda: set(Path(tempfile.gettempdir()).glob("ecomine-ckpt-*"))  # noqa: E731
    before = local()
    out = run_training(spec, data=data)
    # checkpoints were written by rank 0 under the run folder, and their local copies removed once uploaded
    assert list((tmp_path / "runs" / "two-workers").glob("checkpoint_*"))
    assert local() - before == set()
    assert [h["epoch"] for h in out.history] == [1, 2, 3, 4]
    # the planted structure is learnable: the model beats popularity on the holdout
    model = out.results[MODEL_NAME]["all_items"]["NDCG@10"]
    popular = out.results["most_popular"]["all_items"]["NDCG@10"]
    assert model > popular * 1.1, (model, popular)
    # registered, verified and loadable
    reg = Registry(spec.run.registry)
    mv = reg.get("recommend", out.version)
    assert "ci" in mv.tags and mv.data_fingerprint == data.data.fingerprint
    folder = reg.fetch("recommend", out.version)
    assert {"model.safetensors", "config.json", "items.json", "manifest.json"} <= {p.name for p in folder.iterdir()}


def test_worker_failure_recovers_from_checkpoint(ray_session, tmp_path: Path, data) -> None:
    # with a weight average on: the recovered run goes on from the trained weights and the average both
    spec = make_spec(tmp_path, name="fault", epochs=3, max_failures=1, fail_once_at_epoch=2, register_model=False,
                     ema_epochs=1.0)
    out = run_training(spec, data=data)
    assert (tmp_path / "runs" / "fault" / ".fault-drill-epoch-2").exists()
    # epoch 1 came from before the failure (restored from its checkpoint), 2-3 after it
    assert [h["epoch"] for h in out.history] == [1, 2, 3]
    # what tells resume from restart: each epoch trained once - a restart from scratch would
    # train epoch 1 again after the failure (1, 1, 2, 3 in the progress file; its history, [1, 2, 3], looks the same)
    progress = (tmp_path / "runs" / "fault" / "progress.jsonl").read_text().splitlines()
    trained = [json.loads(line)["epoch"] for line in progress if '"train_loss"' in line]
    assert trained == [1, 2, 3]
    checkpoints = [c for c in (tmp_path / "runs" / "fault").glob("checkpoint_*") if c.is_dir()]
    assert checkpoints and all((c / "trained.safetensors").exists() for c in checkpoints)


def test_interrupted_run_resumes_with_same_name(ray_session, tmp_path: Path, data) -> None:
    spec = make_spec(tmp_path, name="resume", epochs=3, max_failures=0, fail_once_at_epoch=3, register_model=False)
    with pytest.raises(Exception, match="fault drill"):
        run_training(spec, data=data)
    out = run_training(spec, data=data)  # same name: picks up the epoch-2 checkpoint
    assert [h["epoch"] for h in out.history] == [1, 2, 3]
    progress = (tmp_path / "runs" / "resume" / "progress.jsonl").read_text().splitlines()
    epochs = [line for line in progress if '"train_loss"' in line]
    assert len(epochs) == 3  # epochs 1-2 before the interruption, only 3 after: nothing re-run


def test_more_workers_than_the_cluster_fails_before_training(ray_session, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, name="too-big", num_workers=64)
    with pytest.raises(SpecError, match=r"scaling\.num_workers: 64 workers"):
        run_training(spec)
    assert not (tmp_path / "runs" / "too-big").exists()


def test_unknown_text_encoder_fails_before_ray(tmp_path: Path) -> None:
    spec = make_spec(tmp_path).model_copy(deep=True)
    spec.model.item_init = "text"
    spec.model.text_encoder = str(tmp_path / "no-such-encoder")
    with pytest.raises(SpecError, match=r"model\.text_encoder: .*no such folder"):
        run_training(spec)


def test_a_run_stops_on_plateau_keeps_the_best_checkpoint_and_says_why(ray_session, tmp_path: Path, data) -> None:
    spec = make_spec(tmp_path, name="plateau", epochs=50)
    spec = spec.model_copy(update={"optim": spec.optim.model_copy(update={
        "lr": 1e-9, "schedule": "constant", "warmup_epochs": 0.0,  # nothing can improve after epoch 1
        "early_stopping": EarlyStoppingSpec(patience=2)})})
    out = run_training(spec, data=data)
    assert out.stopped_on == "plateau"
    assert [h["epoch"] for h in out.history] == [1, 2, 3] and out.best_epoch == 1
    # the registered model is epoch 1's (what validation chose), and its manifest says why training ended
    mv = Registry(spec.run.registry).get("recommend", out.version)
    assert mv.metrics["stopped_on"] == "plateau" and mv.metrics["best_epoch"] == 1
    curve = json.loads((tmp_path / "runs" / "plateau" / "time_to_quality.json").read_text())
    assert [r["epoch"] for r in curve] == [1, 2, 3] and all(r["minutes"] >= 0 for r in curve)
    assert curve[-1]["best"] == curve[0]["val_ndcg@10"] == pytest.approx(out.history[0]["val_ndcg@10"])


def test_a_run_stops_on_its_time_budget_and_says_so(ray_session, tmp_path: Path, data) -> None:
    spec = make_spec(tmp_path, name="budget", epochs=50, register_model=False)
    # a budget shorter than any epoch: the first epoch finishes (and is checkpointed), no second one starts
    spec = spec.model_copy(update={"optim": spec.optim.model_copy(update={"max_minutes": 1e-4, "schedule": "constant"})})
    out = run_training(spec, data=data)
    assert out.stopped_on == "budget"
    assert [h["epoch"] for h in out.history] == [1] and out.best_epoch == 1
    assert out.history[0]["stopped_on"] == "budget"
    assert out.results[MODEL_NAME]["all_items"]["n"] > 0  # evaluated from the kept checkpoint
