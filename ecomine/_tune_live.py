"""The live trial table's Tune callback, in its own module so Tune can pickle it by reference.

Tune pickles its callbacks with the experiment state; a class defined inside a
function is pickled by value with everything it reaches (a rich Console holds
locks). This one holds only a key into `TABLES`, which `ecomine.tuning` fills.
"""

from __future__ import annotations

from typing import Any

from ray.tune import Callback

__all__ = ["TABLES", "LiveTableCallback"]

TABLES: dict[int, Any] = {}


class LiveTableCallback(Callback):
    def __init__(self, key: int) -> None:
        self.key = key

    def _render(self, trials) -> None:
        table = TABLES.get(self.key)
        if table is not None:
            table.render(trials)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._render(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._render(trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._render(trials)
