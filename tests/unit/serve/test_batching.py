"""The arms' batcher (ecomine.serve.batching), without Ray: when batches are cut and what callers get."""

from __future__ import annotations

import asyncio

import pytest

from ecomine.serve.batching import Batcher


def _recording(delay_s: float = 0.0):
    sizes: list[int] = []

    async def run(jobs: list[int]) -> list[int]:
        sizes.append(len(jobs))
        await asyncio.sleep(delay_s)
        return [j * 10 for j in jobs]

    return run, sizes


def test_a_lone_request_runs_at_once_without_waiting() -> None:
    run, sizes = _recording()

    async def main() -> int:
        batcher = Batcher(run, max_batch_size=32, wait_s=0.0)
        # a batcher that waited for 31 more jobs would never answer: the timeout says it did not wait
        return await asyncio.wait_for(batcher.submit(4), timeout=30)

    got = asyncio.run(main())
    assert got == 40 and sizes == [1]


def test_requests_that_queue_while_the_model_computes_form_the_next_batch() -> None:
    run, sizes = _recording(delay_s=0.05)

    async def main() -> list[int]:
        batcher = Batcher(run, max_batch_size=8)
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.sleep(0.01)  # the first batch (one job) is computing now
        rest = [asyncio.ensure_future(batcher.submit(n)) for n in range(1, 12)]
        return [await first, *[await r for r in rest]]

    results = asyncio.run(main())
    assert results == [n * 10 for n in range(12)]
    assert sizes == [1, 8, 3]  # the 11 that queued meanwhile: one full batch, then the remainder


def test_a_failing_batch_fails_its_callers_and_the_next_batch_still_runs() -> None:
    calls: list[list[int]] = []

    async def run(jobs: list[int]) -> list[int]:
        calls.append(jobs)
        if 13 in jobs:
            raise ValueError("bad batch")
        return jobs

    async def main() -> tuple[BaseException | int, int]:
        batcher = Batcher(run, max_batch_size=4)
        bad = asyncio.ensure_future(batcher.submit(13))
        await asyncio.sleep(0)
        good = asyncio.ensure_future(batcher.submit(7))
        results = await asyncio.gather(bad, return_exceptions=True)
        return results[0], await good

    bad, good = asyncio.run(main())
    assert isinstance(bad, ValueError) and good == 7


def test_a_caller_that_gave_up_is_left_out_of_the_batch() -> None:
    run, sizes = _recording(delay_s=0.02)

    async def main() -> int:
        batcher = Batcher(run, max_batch_size=8)
        first = asyncio.ensure_future(batcher.submit(1))
        await asyncio.sleep(0.005)
        gone = asyncio.ensure_future(batcher.submit(2))
        kept = asyncio.ensure_future(batcher.submit(3))
        await asyncio.sleep(0)
        gone.cancel()
        await first
        return await kept

    assert asyncio.run(main()) == 30
    assert sizes == [1, 1]


def test_wait_s_lets_an_idle_model_wait_for_a_fuller_batch() -> None:
    run, sizes = _recording()

    async def main() -> None:
        batcher = Batcher(run, max_batch_size=8, wait_s=0.05)
        first = asyncio.ensure_future(batcher.submit(1))
        await asyncio.sleep(0.01)
        await asyncio.gather(first, batcher.submit(2))

    asyncio.run(main())
    assert sizes == [2]


@pytest.mark.parametrize("size", [1, 3])
def test_configure_applies_from_the_next_batch(size: int) -> None:
    run, sizes = _recording(delay_s=0.02)

    async def main() -> None:
        batcher = Batcher(run, max_batch_size=16)
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.sleep(0.005)
        batcher.configure(max_batch_size=size, wait_s=0.0)
        await asyncio.gather(first, *(batcher.submit(n) for n in range(1, 7)))

    asyncio.run(main())
    assert sizes == [1] + [size] * (6 // size)


def test_weighted_jobs_fill_a_batch_up_to_the_cap_and_a_heavy_one_runs_alone() -> None:
    run, sizes = _recording(delay_s=0.05)

    async def main() -> list[int]:
        batcher = Batcher(run, max_batch_size=5, weight=lambda j: j)
        first = asyncio.ensure_future(batcher.submit(1))  # runs at once; the rest queue behind it
        await asyncio.sleep(0.01)
        rest = [asyncio.ensure_future(batcher.submit(j)) for j in (2, 2, 2, 9, 1)]
        return await asyncio.gather(first, *rest)

    got = asyncio.run(main())
    assert got == [10, 20, 20, 20, 90, 10]
    assert sizes == [1, 2, 1, 1, 1]  # 2+2 | 2 (2+9 > 5) | 9 alone | 1
