"""The campaign's Tune callbacks, in their own module so Tune can pickle them by reference.

Tune pickles its callbacks with the experiment state; a class defined inside a
function is pickled by value with everything it reaches (a rich Console holds
locks). `LiveTableCallback` holds only a key into `TABLES`, which
`ecomine.tuning.campaign` fills; `FreeStoppedTrialsCallback` only a folder and a name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.tune import Callback

from ecomine.train.placement_groups import free_run_placement_groups

__all__ = ["TABLES", "LiveTableCallback", "FreeStoppedTrialsCallback"]

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


class FreeStoppedTrialsCallback(Callback):
    """When a trial ends (finished, stopped by the scheduler, or failed), free its run's CPUs
    (`ecomine.train.placement_groups`)."""

    def __init__(self, trials_dir: str, campaign: str) -> None:
        self.trials_dir, self.campaign = trials_dir, campaign

    def _free(self, trial) -> None:
        try:
            free_run_placement_groups(Path(self.trials_dir) / f"{self.campaign}-{trial.trial_id}")
        except Exception:  # best effort: Ray Train's own cleaner may have freed them already
            pass

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._free(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._free(trial)
