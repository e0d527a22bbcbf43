"""Build the registry and feature tables the serve tests run against (once per session).

Recommend versions are written by ``ecomine.models.recommend.save_recommender``
(the writer the training driver uses) and registered through ``Registry.register``,
each with a TrainSpec as its spec; the model gets a few seconds of next-item
training on the seeded synthetic log so its answers are not noise. Demand and
risk versions are stand-ins (see ``standin_models``).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.integration.serve.standin_models import write_demand_folder, write_risk_folder
from tests.train_helpers import train_briefly

__all__ = ["ServingData", "build_serving_data", "SYNTH"]

SYNTH = {"kind": "synthetic", "users": 200, "items": 60, "days": 120, "seed": 1}


@dataclass
class ServingData:
    registry: Path
    users_uri: Path
    catalogue_uri: Path
    users: dict[str, list[str]]  # user_id -> items (oldest first)
    items: list[str]  # the recommend vocabulary
    categories: list[str]
    rec_a: str = "rec-a"  # production
    rec_b: str = "rec-b"  # staging; same vocabulary, other weights
    rec_other: str = "rec-other"  # a different vocabulary
    dem_a: str = "dem-a"
    dem_b: str = "dem-b"
    risk_a: str = "risk-a"


def build_serving_data(root: Path) -> ServingData:
    import polars as pl
    import torch

    from ecomine.data.features import item_catalogue, user_sequences
    from ecomine.models.recommend import ItemVocab, SequentialRecommender, recommend_small, save_recommender
    from ecomine.registry import Registry
    from ecomine.specs import TrainSpec
    from ecomine.train.events import load_training_events
    from ecomine.train.recommend_data import prepare_recommend_data

    spec = TrainSpec.model_validate({"data": SYNTH, "optim": {"epochs": 1}, "run": {"registry": str(root / "registry")}})
    events, fingerprint = load_training_events(spec.data)
    data = prepare_recommend_data(spec, events, fingerprint)
    features = root / "features"
    features.mkdir(parents=True, exist_ok=True)
    seqs = user_sequences(events, event="purchase", dedupe_consecutive=False)
    seqs.write_parquet(features / "user_sequences.parquet")
    catalogue = item_catalogue(events)
    catalogue.write_parquet(features / "item_catalogue.parquet")

    registry = Registry(root / "registry")
    counts = np.bincount(np.concatenate(data.train_sequences), minlength=data.n_items + 1)
    counts[0] = 0
    popular = [int(i) for i in np.argsort(-counts, kind="stable")[:30] if counts[i] > 0]
    vocab = ItemVocab(items=data.vocab_items, texts=data.vocab_texts)
    metrics = {"test": {}, "run": "serve-tests"}

    def register(version: str, model, vocab: ItemVocab, popular: list[int]) -> None:
        with tempfile.TemporaryDirectory(prefix="ecomine-serve-test-") as tmp:
            save_recommender(tmp, model, vocab, popular=popular)
            registry.register("recommend", tmp, spec=spec, data_fingerprint=fingerprint, metrics=metrics, version=version)

    torch.manual_seed(0)
    model_a = SequentialRecommender(recommend_small(data.n_items))
    train_briefly(model_a, data.train_sequences, steps=25, seed=0)
    register("rec-a", model_a, vocab, popular)
    torch.manual_seed(1)
    model_b = SequentialRecommender(recommend_small(data.n_items))
    train_briefly(model_b, data.train_sequences, steps=5, seed=1)
    register("rec-b", model_b, vocab, popular)
    small = ItemVocab(items=data.vocab_items[:-5], texts=data.vocab_texts[:-5])
    torch.manual_seed(2)
    register("rec-other", SequentialRecommender(recommend_small(len(small))).eval(), small, [1, 2, 3])
    registry.promote("recommend", "rec-a", "production")
    registry.promote("recommend", "rec-b", "staging")

    with tempfile.TemporaryDirectory(prefix="ecomine-serve-test-") as tmp:
        for version, level in (("dem-a", 1.0), ("dem-b", 3.0)):
            folder = write_demand_folder(Path(tmp) / version, level=level, items=data.vocab_items)
            registry.register("demand", folder, spec={"task": "demand", "standin": True}, data_fingerprint=fingerprint,
                              metrics={}, version=version)
        folder = write_risk_folder(Path(tmp) / "risk-a", scale=0.2, threshold=0.5)
        registry.register("risk", folder, spec={"task": "risk", "standin": True}, data_fingerprint=fingerprint,
                          metrics={}, version="risk-a")

    users = {u: list(items) for u, items in zip(seqs["user_id"].to_list(), seqs["items"].to_list())}
    categories = sorted(c for c in catalogue["category"].unique().to_list() if c is not None)
    assert isinstance(catalogue, pl.DataFrame)
    return ServingData(
        registry=root / "registry", users_uri=features / "user_sequences.parquet",
        catalogue_uri=features / "item_catalogue.parquet", users=users, items=list(data.vocab_items),
        categories=categories,
    )
