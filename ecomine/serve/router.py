"""One task's arms behind the ingress: which arm answers, the call with its timeout, shadow copies.

Sits in ``ecomine.serve`` between the ingress (``ecomine.serve.ingress``, which
owns the HTTP routes) and the model deployments' handles (or, colocated, the
in-process arms of ``ecomine.serve.colocation``, which look like handles). The
traffic policy (``ecomine.serve.traffic``) picks champion or challenger from a
sticky key; in shadow mode the challenger gets a copy whose answer is compared
in the background, never returned. A model that does not answer in time is a
504, one that fails a 503 (``HTTPError``).
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional

from ecomine.api.schema import API_PREFIX
from ecomine.predict.tasks import predict_task
from ecomine.serve.config import TaskArgs
from ecomine.serve.observability import ServeMetrics, log_event
from ecomine.serve.traffic import ShadowRecorder, TrafficPolicy, agreement, assign, shadow_sampled

__all__ = ["HTTPError", "TaskRouter", "short", "brief"]


class HTTPError(Exception):
    """An answer other than 200 that the ingress sends as ``{"detail": ...}`` with ``status``."""

    def __init__(self, status: int, detail: Any, headers: Optional[dict[str, str]] = None) -> None:
        super().__init__(str(detail))
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def short(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, at most ``limit`` characters."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def brief(task: str, answer: dict[str, Any]) -> list[Any]:
    """A compact, loggable view of an answer: the task's own (top item ids, first medians, or probabilities)."""
    return predict_task(task).brief(answer)


async def _awaited(response: Any) -> Any:
    return await response


class TaskRouter:
    """One task's arms behind the ingress: picks the arm, calls it, shadows when asked."""

    def __init__(
        self, task: str, args: TaskArgs, handles: dict[str, Any], *, timeout_s: float, salt: str,
        metrics: ServeMetrics, shadow_keep: int,
    ) -> None:
        self.task = task
        # Plain handles: Serve's by-value transport (_by_reference=False) cut the CPU per call here but
        # delivered requests to a batching replica one at a time, so batches never filled.
        self.champion = handles["champion"]
        self.challenger = handles.get("challenger")
        self.policy: Optional[TrafficPolicy] = args.traffic if self.challenger is not None else None
        self.timeout_s = timeout_s
        self.salt = salt
        self.metrics = metrics
        self.recorder = ShadowRecorder(keep=shadow_keep) if self.policy and self.policy.mode == "shadow" else None
        self._background: set[asyncio.Task] = set()

    def arm_for(self, key: str) -> str:
        return assign(key, self.policy) if self.policy is not None else "champion"

    async def _remote(self, handle: Any, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        response = getattr(handle, method).remote(payload)
        try:
            # asyncio.timeout, not wait_for: no extra task per call on the request path
            async with asyncio.timeout(self.timeout_s):
                return await response
        except TimeoutError:
            response.cancel()
            raise HTTPError(504, f"the {self.task} model did not answer within {self.timeout_s:g} s") from None

    async def champion_call(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        """One call to the champion arm, outside the traffic policy (no shadow): a question about the model."""
        try:
            return await self._remote(self.champion, method, payload)
        except HTTPError:
            raise
        except Exception as exc:
            raise HTTPError(503, f"the {self.task} model is unavailable: {type(exc).__name__}: {short(exc)}") from exc

    async def call(self, method: str, payload: dict[str, Any], *, key: str, request_id: str,
                   user_hash: Optional[str]) -> tuple[dict[str, Any], str]:
        arm = self.arm_for(key)
        shadow = None
        if self.recorder is not None and shadow_sampled(key, request_id, self.policy):
            # a shadow answer is compared, never shown: it does not pay for an explanation
            quiet = {**payload, "explain": False} if payload.get("explain") else payload
            shadow = asyncio.ensure_future(self._remote(self.challenger, method, quiet))
        handle = self.champion if arm == "champion" else self.challenger
        try:
            result = await self._remote(handle, method, payload)
        except HTTPError:
            if shadow is not None:
                shadow.cancel()
            raise
        except Exception as exc:
            if shadow is not None:
                shadow.cancel()
            raise HTTPError(503, f"the {self.task} model is unavailable: {type(exc).__name__}: {short(exc)}") from exc
        if shadow is not None:
            task = asyncio.ensure_future(self._compare(shadow, result, request_id, user_hash))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return result, arm

    async def _compare(self, shadow: "asyncio.Future[dict[str, Any]]", champion: dict[str, Any],
                       request_id: str, user_hash: Optional[str]) -> None:
        assert self.recorder is not None
        try:
            challenger = await shadow
        except Exception as exc:
            entry = {"request_id": request_id, "user": user_hash, "error": f"{type(exc).__name__}: {short(exc)}"}
            self.recorder.record_failure(entry)
            log_event("shadow_failed", task=self.task, **entry)
            return
        if "error" in challenger or "error" in champion:
            return
        score = agreement(self.task, champion, challenger)
        entry = {
            "request_id": request_id,
            "user": user_hash,
            "champion": {"model": champion.get("model"), "answer": brief(self.task, champion)},
            "challenger": {"model": challenger.get("model"), "answer": brief(self.task, challenger)},
            "agreement": score,
        }
        self.recorder.record(entry)
        if score is not None:
            self.metrics.shadow(self.task, score)
        log_event(
            "shadow", task=self.task, request_id=request_id, user=user_hash,
            champion=champion.get("model"), champion_answer=",".join(map(str, entry["champion"]["answer"])),
            challenger=challenger.get("model"), challenger_answer=",".join(map(str, entry["challenger"]["answer"])),
            agreement=None if score is None else round(score, 4),
        )

    async def arm_info(self) -> dict[str, Any]:
        async def one(handle: Any, name: str) -> dict[str, Any]:
            try:
                return await asyncio.wait_for(_awaited(handle.info.remote()), 5.0)
            except Exception as exc:
                return {"deployment": name, "kind": "single", "status": "unavailable",
                        "detail": f"{type(exc).__name__}: {short(exc)}"}

        arms = [one(self.champion, f"{self.task}-champion")]
        if self.challenger is not None:
            arms.append(one(self.challenger, f"{self.task}-challenger"))
        infos = await asyncio.gather(*arms)
        out: dict[str, Any] = {"route": f"{API_PREFIX}/{self.task}", "champion": infos[0]}
        if self.challenger is not None:
            out["challenger"] = infos[1]
            out["traffic"] = self.policy.model_dump() if self.policy else None
        if self.recorder is not None:
            out["shadow"] = self.recorder.summary()
        return out

    async def readiness(self) -> dict[str, dict[str, Any]]:
        """``{deployment: {ready, detail}}`` of each arm (an arm that does not answer in 5 s is not ready)."""
        async def one(handle: Any, name: str) -> dict[str, Any]:
            try:
                return await asyncio.wait_for(_awaited(handle.ready.remote()), 5.0)
            except Exception as exc:
                return {"deployment": name, "ready": False, "detail": f"{type(exc).__name__}: {short(exc)}"}

        arms = [one(self.champion, f"{self.task}-champion")]
        if self.challenger is not None:
            arms.append(one(self.challenger, f"{self.task}-challenger"))
        return {r["deployment"]: r for r in await asyncio.gather(*arms)}

    async def drift_windows(self) -> dict[str, Any]:
        """Each arm's live drift window (``GET /v1/drift``)."""
        async def one(handle: Any, name: str) -> dict[str, Any]:
            try:
                return await asyncio.wait_for(_awaited(handle.drift_window.remote()), 10.0)
            except Exception as exc:
                return {"deployment": name, "status": "unavailable", "detail": f"{type(exc).__name__}: {short(exc)}"}

        arms = {"champion": self.champion, **({"challenger": self.challenger} if self.challenger is not None else {})}
        found = await asyncio.gather(*(one(h, f"{self.task}-{arm}") for arm, h in arms.items()))
        return dict(zip(arms, found))
