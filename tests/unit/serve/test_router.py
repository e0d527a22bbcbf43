"""`serve.router.TaskRouter` over colocated arms (`serve.colocation.LocalHandle`): answers, the model timeout
(504, the arm's call cancelled), a failing arm (503). Real asyncio, an arm object with async methods."""

from __future__ import annotations

import asyncio

import pytest

from ecomine.serve.colocation import LocalHandle
from ecomine.serve.config import TaskArgs
from ecomine.serve.observability import ServeMetrics
from ecomine.serve.router import HTTPError, TaskRouter


class Arm:
    """An in-process arm: answers after `delay` seconds, or raises; records cancellation."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.delay, self.fail = delay, fail
        self.calls, self.cancelled = 0, 0

    async def recommend(self, payload: dict) -> dict:
        self.calls += 1
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.fail:
            raise RuntimeError("the arm broke")
        return {"items": payload["history"][:1], "model": "recommend/v1"}


def _router(arm: Arm, timeout_s: float) -> TaskRouter:
    args = TaskArgs.model_validate({"champion": {"version": "v1"}})
    return TaskRouter("recommend", args, {"champion": LocalHandle(arm)}, timeout_s=timeout_s, salt="s",
                      metrics=ServeMetrics(), shadow_keep=10)


def _call(router: TaskRouter) -> tuple[dict, str]:
    return asyncio.run(router.call("recommend", {"history": ["a", "b"]}, key="k", request_id="r", user_hash=None))


def test_an_answer_in_time_comes_back_from_the_champion() -> None:
    arm = Arm()
    router = _router(arm, timeout_s=5)
    assert _call(router) == ({"items": ["a"], "model": "recommend/v1"}, "champion")
    assert _call(router)[0]["items"] == ["a"] and arm.calls == 2
    handle = router.champion
    assert handle.recommend is handle.recommend  # one method object per name, not one per call


def test_a_model_past_its_timeout_is_a_504_and_its_call_is_cancelled() -> None:
    arm = Arm(delay=30)
    with pytest.raises(HTTPError) as err:
        _call(_router(arm, timeout_s=0.05))
    assert err.value.status == 504 and "within 0.05 s" in str(err.value.detail)
    assert arm.calls == 1 and arm.cancelled == 1


def test_a_failing_model_is_a_503_naming_the_error() -> None:
    with pytest.raises(HTTPError) as err:
        _call(_router(Arm(fail=True), timeout_s=5))
    assert err.value.status == 503 and "RuntimeError: the arm broke" in str(err.value.detail)
