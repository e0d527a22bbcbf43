"""The model deployments' own logic, called directly (no Serve): loading, checks, in-place swaps.

The classes are the deployments' underlying Python classes (``Deployment.func_or_class``).
These use ``max_batch_size: 1`` (batching off: the model is called directly); the batcher
has its own tests (tests/unit/serve/test_batching.py) and the live apps batch.
"""

from __future__ import annotations

import asyncio
import shutil

import pytest

from ecomine.registry import ChecksumMismatch
from ecomine.serve.app import build, check_versions
from ecomine.serve.config import AppArgs
from ecomine.serve.deployments import Ensemble, ModelLoadError, Recommender, RiskScorer
from tests.integration.serve.conftest import STANDIN

pytestmark = pytest.mark.integration


def _server(cls, registry, **kw):
    return cls.func_or_class(registry=str(registry), name=f"test-{cls.name}", **kw)


def test_build_refuses_unknown_versions_and_mismatched_ensembles(serving_data) -> None:
    """One line naming the field, as Ray's RayServeException: Serve fails the build at once on it (no retries)."""
    from ray.serve.exceptions import RayServeException

    base = {"registry": str(serving_data.registry)}
    with pytest.raises(RayServeException, match=r"^ecomine: recommend\.champion\.version: task 'recommend' has no version 'rec-c'; nearest: rec-"):
        build({**base, "recommend": {"champion": {"version": "rec-c"}}})
    with pytest.raises(RayServeException, match=r"^ecomine: recommend\.challenger\.members: recommend/rec-a \(60 items\) and recommend/rec-other \(55 items\) have different item vocabularies"):
        build({**base, "recommend": {"champion": {"version": "production"},
                                     "challenger": {"members": [{"version": "rec-a"}, {"version": "rec-other"}]},
                                     "traffic": {"mode": "shadow"}}})
    with pytest.raises(RayServeException, match=r"^ecomine: demand\.champion\.version: stage 'production' of task 'demand' holds no version"):
        build({**base, "recommend": {"champion": {"version": "latest"}}, "demand": {"champion": {"version": "production"}}})
    found = check_versions(AppArgs.model_validate({**base, "recommend": {"champion": {"version": "staging"}}}))
    assert found == {"recommend.champion": ["rec-b"]}


def test_ensemble_refuses_members_with_different_vocabularies(serving_data) -> None:
    server = _server(Ensemble, serving_data.registry, task="recommend")
    with pytest.raises(ModelLoadError, match="different item vocabularies"):
        asyncio.run(server.reconfigure({"members": [{"version": "rec-a"}, {"version": "rec-other"}]}))
    with pytest.raises(ValueError, match="takes members"):
        asyncio.run(server.reconfigure({"version": "rec-a"}))


def test_swap_in_place_keeps_answering_and_checks_sha256(serving_data, tmp_path) -> None:
    registry = tmp_path / "registry"
    shutil.copytree(serving_data.registry, registry)
    server = _server(Recommender, registry)
    history = serving_data.items[:5]

    async def scenario() -> None:
        await server.reconfigure({"version": "rec-a", "max_batch_size": 1})
        assert (await server.info())["model"] == "recommend/rec-a"
        stop = asyncio.Event()
        answers: list[str] = []

        async def stream() -> None:
            while not stop.is_set():
                got = await server.recommend({"history": history, "k": 3})
                answers.append(got["model"])

        streams = [asyncio.create_task(stream()) for _ in range(4)]
        await asyncio.sleep(0.2)
        await server.reconfigure({"version": "rec-b", "max_batch_size": 1})
        await asyncio.sleep(0.2)
        stop.set()
        await asyncio.gather(*streams)  # any failed request would raise here
        assert answers[0] == "recommend/rec-a" and answers[-1] == "recommend/rec-b"
        assert set(answers) == {"recommend/rec-a", "recommend/rec-b"}

        # a tampered file is refused without raising (Serve would stop the replica): the running model
        # stays, and the refusal names the version and the file
        weights = registry / "recommend" / "rec-a" / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:-1] + bytes([weights.read_bytes()[-1] ^ 1]))
        await server.reconfigure({"version": "rec-a", "max_batch_size": 4})
        info = await server.info()
        assert info["model"] == "recommend/rec-b" and info["status"] == "degraded" and "ChecksumMismatch" in info["detail"]
        refused = info["last_reconfigure_error"]
        assert refused["version"] == "rec-a" and refused["file"] == "model.safetensors"
        assert "ChecksumMismatch" in refused["reason"] and refused["at"]
        assert info["max_batch_size"] == 1  # nothing of the refused config was applied
        assert (await server.recommend({"history": history, "k": 2}))["model"] == "recommend/rec-b"
        # a config it cannot even read is refused the same way
        await server.reconfigure({"version": "rec-b", "max_batch_size": 0})
        assert (await server.info())["last_reconfigure_error"]["reason"].startswith("ValueError: test-Recommender: user_config.max_batch_size")
        # the next good config clears the report
        await server.reconfigure({"version": "rec-b", "max_batch_size": 2})
        info = await server.info()
        assert info["status"] == "ok" and info["last_reconfigure_error"] is None and info["max_batch_size"] == 2

        # with nothing loaded yet there is nothing to keep: without args to fall back on (or when they
        # name the refused version too) the first load raises (Serve retries the replica)
        fresh = _server(Recommender, registry)
        with pytest.raises(ChecksumMismatch, match="model.safetensors"):
            await fresh.reconfigure({"version": "rec-a", "max_batch_size": 1})
        assert (await fresh.info())["status"] == "unavailable"
        same = _server(Recommender, registry, fallback={"version": "rec-a", "max_batch_size": 1})
        with pytest.raises(ChecksumMismatch, match="model.safetensors"):
            await same.reconfigure({"version": "rec-a", "max_batch_size": 1})

        # a replica (re)starting on a refused version written into its deployment's user_config starts
        # on the version its args name, and says so: it never fails to start forever
        restarted = _server(Recommender, registry, fallback={"version": "rec-b", "max_batch_size": 4})
        await restarted.reconfigure({"version": "rec-a", "max_batch_size": 1})
        info = await restarted.info()
        assert info["model"] == "recommend/rec-b" and info["status"] == "degraded" and info["max_batch_size"] == 4
        assert info["last_reconfigure_error"]["version"] == "rec-a" and info["last_reconfigure_error"]["file"] == "model.safetensors"
        ready = await restarted.ready()
        assert ready["ready"] and "refused version rec-a" in ready["degraded"] and "still serving recommend/rec-b" in ready["degraded"]
        assert (await restarted.recommend({"history": history, "k": 2}))["model"] == "recommend/rec-b"

    asyncio.run(scenario())


def test_ensembles_of_demand_and_risk_average_members(serving_data) -> None:
    demand = _server(Ensemble, serving_data.registry, task="demand", loader=f"{STANDIN}:load_forecaster")
    risk = _server(RiskScorer, serving_data.registry, loader=f"{STANDIN}:load_risk_model", threshold=0.1)
    item = serving_data.items[1]

    async def scenario() -> None:
        await demand.reconfigure({"members": [{"version": "dem-a", "weight": 1}, {"version": "dem-b", "weight": 3}],
                                  "max_batch_size": 1})
        got = await demand.forecast({"item_ids": [item], "horizon": 2, "quantiles": [0.5]})
        # stand-ins: level 1 and 3, item index 1 -> medians 2 and 6; weights 1:3 -> 5
        assert got["forecasts"][0]["values"] == [[5.0, 5.0]] and got["model"].startswith("ensemble(demand/dem-a*0.25")
        await risk.reconfigure({"version": "risk-a", "max_batch_size": 1})
        scored = await risk.score({"orders": [{"order_id": "o", "lines": [{"item_id": item, "quantity": 1}]}]})
        assert scored["results"][0]["flagged"] is True and scored["results"][0]["threshold"] == 0.1

    asyncio.run(scenario())


def test_colocated_arms_swap_through_the_ingress_user_config(serving_data) -> None:
    from ecomine.serve.ingress import Ingress

    args = AppArgs.model_validate({
        "registry": str(serving_data.registry),
        "recommend": {"champion": {"version": "rec-a"}, "challenger": {"version": "rec-b"},
                      "traffic": {"mode": "ab", "weight": 0.5}, "batching": {"max_batch_size": 1}},
        "ingress": {"colocate": True},
        "auth": {"api_keys_env": None},
    })

    async def scenario() -> None:
        ingress = Ingress.func_or_class.__new__(Ingress.func_or_class)
        await Ingress.func_or_class.__init__(ingress, args, None)
        config = {"recommend-champion": {"version": "rec-a", "max_batch_size": 1},
                  "recommend-challenger": {"version": "rec-b", "max_batch_size": 1}}
        await ingress.reconfigure(config)
        router = ingress.routers["recommend"]
        payload = {"history": serving_data.items[:3], "k": 3}

        async def champion_model() -> str:
            key = next(k for k in (f"u:{n}" for n in range(100)) if router.arm_for(k) == "champion")
            answer, arm = await router.call("recommend", payload, key=key, request_id="r", user_hash=None)
            assert arm == "champion"
            return answer["model"]

        assert await champion_model() == "recommend/rec-a"
        await ingress.reconfigure({**config, "recommend-champion": {"version": "rec-b", "max_batch_size": 1}})
        assert await champion_model() == "recommend/rec-b"
        info = (await ingress.models())["tasks"]["recommend"]
        assert info["champion"]["model"] == "recommend/rec-b" and info["challenger"]["model"] == "recommend/rec-b"
        # the serving ingress never raises from reconfigure (Serve would stop it): a refused config is reported
        await ingress.reconfigure({"demand-champion": {"version": "x"}})
        models = await ingress.models()
        assert models["status"] == "degraded" and "the colocated arms are" in models["last_reconfigure_error"]["reason"]
        assert await champion_model() == "recommend/rec-b"
        await ingress.reconfigure(config)
        models = await ingress.models()
        assert models["status"] == "ok" and models["last_reconfigure_error"] is None
        assert await champion_model() == "recommend/rec-a"

        # the first reconfigure (the replica starting) has nothing to keep: it raises
        fresh = Ingress.func_or_class.__new__(Ingress.func_or_class)
        await Ingress.func_or_class.__init__(fresh, args, None)
        ready, body = await fresh.readiness()  # /readyz: no arm has a model yet
        assert not ready and body["status"] == "unavailable"
        assert set(body["detail"]) == {"recommend-champion", "recommend-challenger"}
        assert (await ingress.readiness())[0] is True
        with pytest.raises(ValueError, match="the colocated arms are"):
            await fresh.reconfigure({"demand-champion": {"version": "x"}})

    asyncio.run(scenario())
