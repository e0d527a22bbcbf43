"""Drift through a real Serve app: a stream like the training data stays below the threshold, a shifted one
crosses it; `ecomine monitor` exits 0 / 1 / 2 accordingly, and /v1/models carries the same numbers.

The app (``drift`` at /drift) serves one recommend version registered with a profile built from half of
the synthetic log's held-out histories; the "like" stream draws from the other half. The shifted stream
comes from another synthetic log: users who order five times as often (longer histories), its item ids
shuffled over the vocabulary (every item known, popularity turned around).
"""

from __future__ import annotations

import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from ecomine.data.drift import PSI_THRESHOLD
from tests.integration.serve.conftest import SMALL, ServeTarget
from tests.train_helpers import train_briefly

pytestmark = pytest.mark.integration

DRIFT_SYNTH = {"kind": "synthetic", "users": 1000, "items": 60, "days": 120, "seed": 1}


@pytest.fixture(scope="module")
def drift_app(serve_base: str, tmp_path_factory: pytest.TempPathFactory):
    import torch
    from ray import serve

    from ecomine.data.drift import PROFILE_FILE
    from ecomine.datasets.synthetic import SynthParams, generate
    from ecomine.data.features import user_sequences
    from ecomine.models.recommend import ItemVocab, SequentialRecommender, recommend_small, save_recommender
    from ecomine.registry import Registry
    from ecomine.serve.app import build
    from ecomine.specs import TrainSpec
    from ecomine.train.events import load_training_events
    from ecomine.train.recommend_data import prepare_recommend_data
    from ecomine.train.profiles import recommend_profile

    root = tmp_path_factory.mktemp("drift")
    spec = TrainSpec.model_validate({"data": DRIFT_SYNTH, "run": {"registry": str(root / "registry")}})
    events, fingerprint = load_training_events(spec.data)
    d = prepare_recommend_data(spec, events, fingerprint)
    torch.manual_seed(0)
    model = SequentialRecommender(recommend_small(d.n_items))
    train_briefly(model, d.train_sequences, steps=25, seed=0)
    held = [h for h in d.test_histories if len(h)]
    reference, like = held[0::2], held[1::2]
    with tempfile.TemporaryDirectory() as tmp:
        save_recommender(tmp, model, ItemVocab(items=d.vocab_items, texts=d.vocab_texts), popular=[1, 2, 3])
        Path(tmp, PROFILE_FILE).write_text(recommend_profile(model, d.train_sequences, reference, d.n_items).dumps())
        Registry(root / "registry").register("recommend", tmp, spec=spec, data_fingerprint=fingerprint, metrics={},
                                             version="rec-drift")

    other = generate(SynthParams(users=300, items=60, days=120, seed=9, orders_per_year=30)).events
    shuffle = dict(zip(d.vocab_items, np.random.default_rng(0).permutation(d.vocab_items).tolist()))
    shifted = [[shuffle[i] for i in items] for items in user_sequences(other, event="purchase")["items"].to_list()]

    args = {"registry": str(root / "registry"), "recommend": {"champion": {"version": "rec-drift"}, "resources": SMALL},
            "auth": {"api_keys_env": None}, "ingress": {"num_cpus": 0.1, "colocate": True}}
    serve.run(build(args), name="drift", route_prefix="/drift")
    target = ServeTarget(f"{serve_base}/drift", "drift", args, {})
    items = list(d.vocab_items)
    yield {"target": target, "registry": root / "registry",
           "like": [[items[i - 1] for i in h] for h in like], "shifted": [h for h in shifted if h]}
    serve.delete("drift")


def _send(target: ServeTarget, histories: list[list[str]], n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    picks = [histories[i] for i in rng.integers(0, len(histories), n)]
    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda h: client.post(target.url + "/v1/recommend", json={"history": h, "k": 5}).status_code, picks))
    assert codes == [200] * n


def _monitor(url: str, registry: Path, *extra: str):
    from ecomine.cli.main import app

    result = CliRunner().invoke(app, ["monitor", "--url", url, "--registry", str(registry), "--task", "recommend", *extra])
    return result.exit_code, result.output


def _psi(rows: list[dict]) -> dict[str, float]:
    return {f["feature"]: f["psi"] for f in rows[0]["features"]}


def test_like_stream_stays_below_and_shifted_stream_crosses(drift_app) -> None:
    target, registry = drift_app["target"], drift_app["registry"]
    code, out = _monitor(target.url, registry)  # nothing observed yet
    assert code == 2 and "too few values" in out, out

    t0 = time.perf_counter()
    _send(target, drift_app["like"], 400, seed=1)
    code, out = _monitor(target.url, registry, "--json")
    assert code == 0, out
    like = _psi(json.loads(out))
    assert max(like.values()) < PSI_THRESHOLD, like
    print(f"\n[drift] like stream PSI {like}")
    models = target.get("/v1/models").json()["tasks"]["recommend"]["champion"]["drift"]
    assert models["status"] == "ok" and models["reference_version"] == "rec-drift"
    assert models["observations"] == 400
    assert {f["feature"]: f["psi"] for f in models["features"]} == pytest.approx(like)  # same numbers, both places

    _send(target, drift_app["shifted"], 800, seed=2)
    code, out = _monitor(target.url, registry, "--json")
    assert code == 1, out
    report = json.loads(out)[0]
    assert {"history_length", "item_popularity_rank"} <= set(report["drifted"]), report
    print(f"[drift] like + shifted stream PSI {_psi([report])}; streams took {time.perf_counter() - t0:.1f} s")
    code, out = _monitor(target.url, registry)  # the table names the drifted features
    assert code == 1 and "drift in recommend.champion.history_length" in " ".join(out.split())
    assert target.get("/v1/models").json()["tasks"]["recommend"]["champion"]["drift"]["status"] == "drift"


def test_a_version_without_profile_is_bad_input_and_models_stays_200(lean: ServeTarget, serving_data) -> None:
    code, out = _monitor(lean.url, serving_data.registry)
    assert code == 2
    assert "recommend/rec-a has no profile.json" in " ".join(out.split())
    r = lean.get("/v1/models")
    assert r.status_code == 200
    drift = r.json()["tasks"]["recommend"]["champion"]["drift"]
    assert drift["status"] == "no_profile" and "rec-a" in drift["detail"]
