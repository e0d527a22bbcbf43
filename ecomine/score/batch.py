"""Batch scoring: one registered version over every user, item or order line, through Ray Data, to parquet.

An operator's verb on top of the spine (registry -> predict -> here), called by
`ecomine score` (`ecomine.cli.score`) and called by nothing below it. A version is
resolved once on the driver and pinned by id, so a stage moving mid-run changes
nothing; each actor of a Ray Data actor pool (`map_batches` with a callable class,
`compute=ActorPoolStrategy(size=actors)`) then loads it through `runtime.load_state`
(sha256-verified, ensembles expanded into their pinned members) and scores batches
with the functions a Serve replica uses (`plan_recommend` / `run_jobs` /
`finish_recommend`, `demand_job`, the risk orders): an answer here is the answer
Serve gives for the same history, items or order.

Output is all or nothing. Parts are streamed from the pool into a staging location
beside the final one, never under it: a local folder `.<name>.tmp-<hex>` renamed onto
the final folder in one step at the end; on S3 a sibling prefix `<output>.tmp-<hex>/`,
copied server-side under the final prefix once every part is written, then
`_SUCCESS.json` (listing every part and its rows) written last and the staging prefix
deleted. S3 has no rename of many objects, so a reader of an S3 output must check
`_SUCCESS.json`: a run that fails while scoring leaves nothing under the final prefix,
and one that dies during the copy leaves parts but no marker (a failure the process
sees also deletes them).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl

from ecomine import storage
from ecomine.cluster.session import ensure_ray, surfaced
from ecomine.registry import Registry, RegistryError
from ecomine.score.tasks import ScoreError, score_task
from ecomine.specs import ScoreSpec, TableInput, TrainSpec, expand_uri

if TYPE_CHECKING:
    import pyarrow as pa

    from ecomine.predict.state import ModelState
    from ecomine.registry import Registry

__all__ = ["ScoreError", "ScoreOutcome", "SUCCESS_FILE", "ScorePlan", "plan_scoring", "load_scorer",
           "score_table", "BatchScorer", "run_scoring"]

SUCCESS_FILE = "_SUCCESS.json"


@dataclass
class ScoreOutcome:
    output: str
    version: str
    label: str
    rows_in: int
    rows_out: int
    parts: dict[str, int]
    seconds: float  # the Ray Data pipeline: actor start, scoring, parts written
    total_seconds: float  # from the spec to the committed output

    @property
    def rows_per_s(self) -> float:
        return self.rows_in / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class ScorePlan:
    """What the driver settles before any actor starts: the pinned version and the input rows."""

    spec: ScoreSpec
    version: str
    table: pl.DataFrame
    manifest: Any = field(repr=False, default=None)


# --------------------------------------------------------------------------- the driver's checks


def _registry(spec: ScoreSpec) -> Registry:
    return Registry(spec.registry)


def plan_scoring(spec: ScoreSpec) -> ScorePlan:
    """Resolve the version, check the output is new, read and check the input; ScoreError on any of them."""
    try:
        mv = _registry(spec).get(spec.task, spec.version)
    except RegistryError as exc:
        raise ScoreError(f"version: {exc}") from None
    _check_output_free(spec.output)
    table = _read_inputs(spec, mv)
    task = score_task(spec.task)
    missing = [c for c in task.required if c not in table.columns]
    if missing:
        raise ScoreError(f"inputs: the table lacks column(s) {missing} that {spec.task} scoring reads "
                         f"(has {table.columns[:12]})")
    if table.height == 0:
        raise ScoreError("inputs: the table has no rows")
    if task.horizon and spec.horizon is not None:
        _check_horizon(spec, mv)
    _check_loader(spec)  # last: the default loaders import torch
    return ScorePlan(spec, mv.version, task.keep(table), mv)


def _check_horizon(spec: ScoreSpec, mv: Any) -> None:
    """A horizon beyond what the version (every member of an ensemble) was trained for, refused on the driver
    from the registry's specs - the actors would refuse it too, under Ray's logging of their failure."""
    from ecomine.predict.runtime import expand_ensembles  # serving's own ensemble expansion
    from ecomine.predict.state import ModelLoadError

    try:
        members, _ = expand_ensembles(_registry(spec), spec.task, [(mv.version, 1.0)], spec.task)
    except (ModelLoadError, RegistryError) as exc:
        raise ScoreError(f"version: {exc}") from None
    trained = [h for m, *_ in members if (h := (m.spec.get("model") or {}).get("horizon")) is not None]
    if trained and spec.horizon > min(trained):
        raise ScoreError(f"horizon: {spec.horizon} is beyond what {spec.task}/{mv.version} was trained for "
                         f"(at most {min(trained)} periods); leave horizon unset for the trained one")


def _check_loader(spec: ScoreSpec) -> None:
    """Import the loader here: in an actor's constructor its failure would come back as a dead actor."""
    from ecomine.predict.runtime import DEFAULT_LOADERS, import_loader
    from ecomine.predict.state import ModelLoadError

    try:
        import_loader(spec.loader or DEFAULT_LOADERS[spec.task], spec.task)
    except ModelLoadError as exc:
        raise ScoreError(f"loader: {exc}") from None


def _check_output_free(out: str) -> None:
    try:
        if storage.is_s3(out):
            taken = bool(storage.list_prefix(out))
        else:
            dest = storage.local_path(out)
            taken = dest.exists() and (not dest.is_dir() or any(dest.iterdir()))
    except storage.StorageError as exc:
        raise ScoreError(f"output: {exc}") from None
    if taken:
        raise ScoreError(f"output: {out} exists and is not empty; choose a new folder or prefix")


def _read_inputs(spec: ScoreSpec, mv: Any) -> pl.DataFrame:
    inputs = spec.inputs
    if isinstance(inputs, TableInput):
        uri = expand_uri(inputs.uri)
        fmt = inputs.format or {"parquet": "parquet", "csv": "csv", "jsonl": "jsonl", "ndjson": "jsonl"}.get(
            uri.rsplit(".", 1)[-1].lower())
        if fmt is None:
            raise ScoreError(f"inputs.uri: cannot infer the format of {uri!r}; set inputs.format")
        try:
            if fmt == "parquet":
                return storage.read_parquet(uri)
            raw = io.BytesIO(storage.read_bytes(uri))
        except storage.StorageError as exc:
            raise ScoreError(f"inputs.uri: {exc}") from None
        try:
            return pl.read_csv(raw, try_parse_dates=True) if fmt == "csv" else pl.read_ndjson(raw)
        except pl.exceptions.PolarsError as exc:
            raise ScoreError(f"inputs.uri: {uri} is not a valid {fmt} file ({str(exc).strip()[:160]})") from None
    from pydantic import ValidationError

    from ecomine.train.events import load_training_events

    ref = inputs.data
    if ref is None:
        try:
            ref = TrainSpec.model_validate(mv.spec).data
        except ValidationError:
            raise ScoreError(f"inputs.data: {spec.task}/{mv.version} carries no training spec to take the data "
                             "from (an ensemble or a stand-in); name the data ref") from None
    events, _ = load_training_events(ref)
    return score_task(spec.task).from_events(events)


# --------------------------------------------------------------------------- one batch (actors and the plain loop)


def load_scorer(spec: ScoreSpec, version: str) -> ModelState:
    """The version loaded as a Serve replica loads it (verified, ensembles expanded)."""
    from ecomine.predict.runtime import load_state

    return load_state(_registry(spec), spec.task, [(version, 1.0)], loader_path=spec.loader,
                      name=f"score {spec.task}/{version}")


def score_table(state: ModelState, spec: ScoreSpec, table: pa.Table | pl.DataFrame) -> pa.Table:
    """Score one batch of input rows with the predict layer's functions; the output rows, in input order."""
    df = table if isinstance(table, pl.DataFrame) else pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    return score_task(spec.task).score(state, spec, df).to_arrow()


class BatchScorer:
    """The callable class of the actor pool: loads the version once, scores every batch it is given."""

    def __init__(self, spec_json: str, version: str, threads: int) -> None:
        import torch

        # Ray gives an actor `num_cpus` logical CPUs but torch would start a thread per core:
        # two actors on two cores would each run two threads and fight over them.
        torch.set_num_threads(threads)
        self.spec = ScoreSpec.model_validate_json(spec_json)
        self.state = load_scorer(self.spec, version)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return score_table(self.state, self.spec, batch)


# --------------------------------------------------------------------------- the run


def run_scoring(spec: ScoreSpec, *, ray_address: str | None = None, plan: ScorePlan | None = None) -> ScoreOutcome:
    """Score every input row through Ray Data and commit the parquet parts (all or nothing)."""


    t0 = time.perf_counter()
    plan = plan or plan_scoring(spec)
    ensure_ray(ray_address)
    t1 = time.perf_counter()
    with _staging(spec.output) as (stage, commit), _data_context(), _actor_errors():
        parts, rows_out = _stream_parts(plan, stage)
        seconds = time.perf_counter() - t1
        marker = {"task": spec.task, "version": plan.version, "rows_in": plan.table.height, "rows": rows_out,
                  "parts": parts, "seconds": round(seconds, 3), "spec": spec.model_dump(mode="json")}
        commit(marker)
    return ScoreOutcome(spec.output, plan.version, f"{spec.task}/{plan.version}", plan.table.height, rows_out, parts, seconds,
                        time.perf_counter() - t0)


def _stream_parts(plan: ScorePlan, stage: str) -> tuple[dict[str, int], int]:
    import ray.data


    spec = plan.spec
    arrow = plan.table.to_arrow()
    # Blocks of whole batches, a few per actor, so the pool is busy from the start.
    n_blocks = max(1, min(math.ceil(arrow.num_rows / spec.batch_size), 8 * spec.actors))
    per_block = math.ceil(math.ceil(arrow.num_rows / n_blocks) / spec.batch_size) * spec.batch_size
    blocks = [arrow.slice(s, per_block) for s in range(0, arrow.num_rows, per_block)]
    scored = ray.data.from_arrow(blocks).map_batches(
        BatchScorer,
        batch_format="pyarrow",
        batch_size=spec.batch_size,
        compute=ray.data.ActorPoolStrategy(size=spec.actors),
        fn_constructor_kwargs={"spec_json": spec.model_dump_json(), "version": plan.version,
                               "threads": max(1, int(spec.num_cpus))},
        num_cpus=spec.num_cpus,
        num_gpus=spec.num_gpus or None,
    )
    parts: dict[str, int] = {}
    pending: list[pl.DataFrame] = []
    held = 0

    def flush() -> None:
        nonlocal pending, held
        name = f"part-{len(parts):05d}.parquet"
        storage.write_parquet(storage.join(stage, name), pl.concat(pending, how="vertical"))
        parts[name] = held
        pending, held = [], 0

    for batch in scored.iter_batches(batch_size=None, batch_format="pyarrow"):
        df = pl.from_arrow(batch)
        assert isinstance(df, pl.DataFrame)
        pending.append(df)
        held += df.height
        if held >= spec.rows_per_file:
            flush()
    if held or not parts:
        flush()
    return parts, sum(parts.values())


@contextlib.contextmanager
def _staging(out: str) -> Iterator[tuple[str, Any]]:
    """``(staging URI, commit(marker))``: parts go to the staging URI; commit moves them under ``out``."""
    token = secrets.token_hex(4)
    if not storage.is_s3(out):
        final = storage.local_path(out)
        final.parent.mkdir(parents=True, exist_ok=True)
        stage = final.parent / f".{final.name}.tmp-{token}"
        stage.mkdir()

        def commit_local(marker: dict[str, Any]) -> None:
            storage.write_json(stage / SUCCESS_FILE, marker)
            if final.exists():
                final.rmdir()  # empty (checked when planning)
            os.rename(stage, final)  # the commit: the folder appears whole or not at all

        try:
            yield str(stage), commit_local
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        return
    stage_uri = f"{out.rstrip('/')}.tmp-{token}"
    copied = False

    def commit_s3(marker: dict[str, Any]) -> None:
        nonlocal copied
        copied = True
        storage.copy_tree(stage_uri, out)  # server-side copies; nothing under `out` until here
        storage.write_json(storage.join(out, SUCCESS_FILE), marker)  # readers check this one

    try:
        yield stage_uri, commit_s3
    except BaseException:
        if copied:
            with contextlib.suppress(Exception):
                storage.delete_prefix(out)
        raise
    finally:
        with contextlib.suppress(Exception):
            storage.delete_prefix(stage_uri)


@contextlib.contextmanager
def _data_context() -> Iterator[None]:
    """Parts in input order, and an actor's own exception rather than Ray's wrapper; restored after."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    saved = ctx.execution_options.preserve_order, ctx.raise_original_map_exception
    ctx.execution_options.preserve_order = True
    ctx.raise_original_map_exception = True
    try:
        yield
    finally:
        ctx.execution_options.preserve_order, ctx.raise_original_map_exception = saved


def _actor_errors():
    """A ScoreError or a model that would not load, raised in an actor, comes back as one ScoreError."""
    from ecomine.predict.state import ModelLoadError

    return surfaced((ScoreError, ModelLoadError), ScoreError)
