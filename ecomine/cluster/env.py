"""The environment variables ecomine sets for Ray's processes, and the one way it sets them (`scoped_env`).

Sits in `ecomine.cluster` below `session`: `session.ensure_ray` starts a local Ray with `ONE_NODE_ENV`
(and its dashboard's address), `train.runner.run_training` wraps each `TorchTrainer.fit()` in `train_env()`
- `ecomine train`, Tune trials (a trial's actor runs the same call), retraining and the demo - and a Tune
campaign's fit runs with Ray's legacy terminal output (`tuning.campaign`). Ray Train reads its variables
from the driver's environment when `fit()` starts the controller and hands them on to the controller and
its workers (`ENV_VARS_TO_PROPAGATE` in Ray's `ray/train/v2/_internal/constants.py`), so setting them around
`fit()` reaches every process of the run and nothing else. A value the user exported wins.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["scoped_env", "POLL_ENV", "TRAIN_POLL_S", "train_env", "PREEMPTION_ENV", "ONE_NODE_ENV"]

POLL_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"

#: Seconds between the controller's polls of its workers (Ray's default: 2.0). A worker's result queue
#: holds one report: its next `ray.train.report` waits until a poll takes the last one, and the end of the
#: run is seen at the next poll, so at 2 s every epoch shorter than 2 s was stretched to 2 s and every
#: run ended up to 2 s late. A poll is one small actor call per worker; a missed one is not a failure
#: (Ray waits 10 minutes before it calls a worker hung). `python benchmarks/train_overhead.py` times a tiny
#: `ecomine train` at this value against Ray's 2 s in one run (README; 0.5 s took nearly all that 0.1 s did
#: with a fifth of its polls, which count on a cluster of many workers).
TRAIN_POLL_S = 0.5

PREEMPTION_ENV = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"

#: What a one-node Ray's processes start with: nothing drains its only node, so Train starts no preemption
#: watcher (an actor process per run that polls for node drains: ~1 s of a 2-core box per run).
ONE_NODE_ENV = {PREEMPTION_ENV: "0"}


@contextlib.contextmanager
def scoped_env(values: dict[str, str], *, exported_wins: bool = True) -> Iterator[None]:
    """Inside: this process's environment (and so every process started meanwhile) carries `values`; after,
    it is as it was. With `exported_wins` a variable the user already exported keeps the user's value."""
    values = {k: v for k, v in values.items() if not (exported_wins and k in os.environ)}
    prior = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in prior.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def train_env() -> contextlib.AbstractContextManager[None]:
    """Around one `fit()`: ecomine's Ray Train settings (the controller's poll), unless the user set them."""
    return scoped_env({POLL_ENV: str(TRAIN_POLL_S)})
