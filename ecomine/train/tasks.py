"""The task contract: what the one training path needs from recommend, demand and risk.

Sits in `train` under the loop and the driver, which know nothing task-specific:
a `Task` prepares picklable data on the driver, builds the model on each
worker, turns example indices into a batch, validates on rank 0, evaluates on
the test split beside its baselines, and writes the version folder. Adding a
task = one module implementing this protocol + one line in `_TASKS`.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any, Protocol

import numpy as np

__all__ = ["Task", "get_task", "TASK_NAMES"]

# name -> "module:attribute" of the Task instance (imported lazily: each pulls torch).
_TASKS = {
    "recommend": "ecomine.train.recommend_task:TASK",
    "demand": "ecomine.train.demand_task:TASK",
    "risk": "ecomine.train.risk_task:TASK",
}
TASK_NAMES = tuple(_TASKS)


class Task(Protocol):
    name: str

    def prepare(self, spec: Any) -> Any:
        """Driver side: load and split data; return a picklable object (shipped via ray.put)."""

    def adapt(self, data: Any, spec: Any) -> Any:
        """Driver side: data `prepare`d for another spec of this task (a campaign prepares once)
        made fit for `spec` (e.g. windows re-cut for another context length); cheap, or `data` itself."""

    def driver_init(self, spec: Any, data: Any) -> Any | None:
        """Driver side, once: anything expensive every worker needs (e.g. text-initialised embeddings)."""

    def build_model(self, spec: Any, data: Any, init: Any | None) -> Any:
        """Worker side: an nn.Module whose forward(**batch) returns the training loss."""

    def num_examples(self, data: Any) -> int:
        """Training examples per epoch (the loop shards their indices across workers)."""

    def batch(self, data: Any, index: np.ndarray, device: Any) -> dict[str, Any]:
        """Tensors for the examples at `index`, on `device`."""

    # Optional: `epoch_order(data, rng, batch_size) -> np.ndarray`, a permutation of the examples for one
    # epoch (recommend buckets windows by length); without it the loop shuffles them.

    def validate(self, model: Any, data: Any, spec: Any, device: Any) -> dict[str, float]:
        """Rank 0: validation metrics by name without prefix (`ndcg@10`, `pinball`, `pr_auc`)."""

    def evaluate(self, model: Any, data: Any, spec: Any) -> dict[str, Any]:
        """Test-split report: {model or baseline name: metrics}, JSON-able via report_json."""

    def headline(self, results: dict[str, Any]) -> dict[str, Any]:
        """The model's own test metrics, stored in the registry manifest."""

    def save(self, folder: Path, model: Any, data: Any, spec: Any) -> None:
        """Write the version folder's task files (safetensors weights, config, vocabularies)."""

    def load(self, folder: Path, spec: Any, data: Any) -> Any:
        """A registered version folder -> the model `evaluate` takes (ValueError if it no longer fits `data`)."""

    def format_report(self, results: dict[str, Any], title: str) -> Any:
        """A rich renderable of `evaluate`'s results."""

    def fingerprint(self, data: Any) -> str:
        """Fingerprint of the data the model was trained on (stored in the manifest)."""

    def profile(self, folder: Path, model: Any, data: Any, spec: Any) -> Any:
        """The version's drift reference (`data.drift.ReferenceProfile`): its test inputs and the model's answers
        (`train.profiles` builds it; `folder` holds the version as `save` wrote it)."""

    def warm_start_vocab(self, spec: Any, data: Any) -> tuple[list[str] | None, list[str] | None]:
        """The item ids and item-token vocabulary a warm start lines its tensors up by (None where the task has none)."""

    # Optional: `fit_lightgbm(spec, data)`, the task's LightGBM model fitted on the driver (`model.forecaster` /
    # `model.classifier: lightgbm`); a task without one has no LightGBM version.


def get_task(name: str) -> Task:
    if name not in _TASKS:
        raise ValueError(f"unknown task {name!r}; known: {list(_TASKS)}")
    module, attr = _TASKS[name].split(":")
    try:
        return getattr(import_module(module), attr)
    except ModuleNotFoundError as e:
        if e.name == module:
            raise ValueError(f"task {name!r} is not available in this build of ecomine") from None
        raise
