"""A context manager that runs a watcher on a daemon thread while its block runs.

Beside the training layers: the runner's progress tail and the throughput
benchmark's worker watch subclass it and write `_run`, which loops until
`self._stop` is set; leaving the block sets it and waits up to 5 s.
"""

from __future__ import annotations

import threading

__all__ = ["BackgroundThread"]


class BackgroundThread:
    """Start `_run` on a daemon thread on `__enter__`; stop and join it on `__exit__`."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        raise NotImplementedError
