"""Ray Serve answers /v1/recommend from a registered ensemble version, named by id like any version."""

from __future__ import annotations

import shutil

import httpx
import pytest

from tests.integration.serve.conftest import SMALL

pytestmark = pytest.mark.integration


def test_serve_answers_from_an_ensemble_version(serve_base, serving_data, tmp_path):
    from ray import serve

    from ecomine.ensemble.build import build_ensemble
    from ecomine.serve.app import build
    from ecomine.specs import EnsembleSpec

    registry = tmp_path / "registry"  # a copy: the shared serving registry's `latest` stays as the other tests expect
    shutil.copytree(serving_data.registry, registry)
    spec = EnsembleSpec.model_validate({"task": "recommend", "registry": str(registry),
                                        "members": [{"version": serving_data.rec_a}, {"version": serving_data.rec_b}]})
    outcome = build_ensemble(spec)
    args = {"registry": str(registry), "recommend": {"champion": {"version": outcome.version}, "resources": SMALL},
            "auth": {"api_keys_env": None}, "ingress": {"num_cpus": 0.05, "colocate": True}}
    serve.run(build(args), name="ensemble-version", route_prefix="/ensemble-version")
    try:
        history = serving_data.users[next(iter(serving_data.users))][:5]
        r = httpx.post(f"{serve_base}/ensemble-version/v1/recommend", json={"history": history, "k": 5}, timeout=30)
        assert r.status_code == 200, r.text
        body = r.json()
        assert sorted(body["versions"]) == sorted([serving_data.rec_a, serving_data.rec_b])
        assert len(body["items"]) == 5
    finally:
        serve.delete("ensemble-version")
