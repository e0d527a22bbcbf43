"""train.background.BackgroundThread: the watcher runs while the block runs and stops when it ends."""

from __future__ import annotations

import threading

from ecomine.train.background import BackgroundThread


class _Counter(BackgroundThread):
    def __init__(self) -> None:
        super().__init__()
        self.ticks = 0
        self.started = threading.Event()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.ticks += 1
            self.started.set()


def test_runs_during_the_block_and_stops_after_it() -> None:
    with _Counter() as c:
        assert c.started.wait(5)
    assert not c._thread.is_alive()
    after = c.ticks
    assert after >= 1 and c.ticks == after
