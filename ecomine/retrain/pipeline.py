"""`ecomine retrain`: the operating loop - new data in, a gated challenger out, the champion promoted and served.

Sits at the top of the flow like `tuning` and `ensembles` (it drives data ->
train -> registry -> serve). One run of a `PipelineSpec`:

1. build the window's data (the TrainSpec's data ref with `window`; cleaning runs on
   the whole log first, so returns still link to earlier purchases);
2. train a **challenger** through the same Ray Train path as `ecomine train`,
   warm-started from the champion's weights when asked (`ecomine.train.warm_start`),
   and register it (tagged `pipeline:<name>`, `challenger`);
3. score champion **and** challenger, as served (`ecomine.predict.runtime`: each version's
   own vocabulary, history state and calibration), on the same newest holdout - recommend:
   each user's newest purchase in the window, predicted from everything before it; risk:
   the orders of the window's test period, labelled by whether any line came back;
4. the gate (`ecomine.retrain.gate`): paired bootstrap over those users / orders on the primary
   metric, guards on the others;
5. promote in the registry, then hot-swap a running Serve app (`ecomine.serve.swap`); a
   swap that fails puts the stage pointer back, so the registry and Serve never disagree;
6. write the run record beside the registry: `<registry>/_retrain/<name>/<run>/record.json`,
   `report.md` and `gate.png` (written last: a record exists once its run ended).

A training run that fails leaves the champion, its stage and Serve as they were (the
failed record says why). `rollback` restores the stage's previous version and swaps it back.
"""

from __future__ import annotations

import io
import json
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ecomine import storage
from ecomine.registry import Registry
from ecomine.retrain.holdout import data_summary, gate, score_versions
from ecomine.specs import PipelineSpec, SpecError, TrainSpec

__all__ = ["ServeTarget", "RetrainError", "RetrainRecord", "run_pipeline", "rollback", "record_root"]

RECORD_DIR = "_retrain"  # under the registry root; not a task name (tasks match [a-z0-9]...)


class RetrainError(RuntimeError):
    """The challenger's training (or the swap) failed; nothing was promoted. The record says why."""


@dataclass
class ServeTarget:
    """A running Serve application to keep in step with the stage (`--serve APP --address URL`)."""

    app: str
    address: str | None = None
    timeout_s: float = 300.0


@dataclass
class RetrainRecord:
    pipeline: str
    run: str
    task: str
    stage: str
    status: str  # promoted | refused | failed | rolled_back
    started_at: str
    finished_at: str | None = None
    seconds: float | None = None
    champion: str | None = None
    challenger: str | None = None
    served: str | None = None  # the version the stage (and Serve) hold afterwards
    window: dict[str, Any] | None = None
    data: dict[str, Any] = field(default_factory=dict)
    warm_start: dict[str, Any] | None = None
    gate: dict[str, Any] | None = None
    reports: dict[str, Any] = field(default_factory=dict)
    swap: dict[str, Any] | None = None
    error: str | None = None
    uri: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def _now() -> datetime:
    return datetime.now(timezone.utc)


def record_root(registry: str, pipeline: str) -> str:
    return storage.join(registry, RECORD_DIR, pipeline)


# --------------------------------------------------------------------------- the run


def run_pipeline(
    spec: PipelineSpec,
    *,
    source: str | Path | None = None,
    serve: ServeTarget | None = None,
    ray_address: str | None = None,
    console: Any = None,
) -> RetrainRecord:
    """One retraining run; see the module docstring. Returns the record (also written beside the registry).

    Raises SpecError (bad input: nothing trained or written), RetrainError (training or the swap
    failed: the champion and Serve are unchanged; a `failed` record is written).

    ~90 lines: the retraining steps in their order (window, train, hold out, gate, promote, swap) inside the
    one try block that writes the failed record.
    """
    from ecomine.ensemble.trained import train_version
    from ecomine.train.tasks import get_task

    t0 = time.perf_counter()
    train = spec.train_spec(source)
    root = spec.registry_root(train)
    registry = Registry(root)
    if serve is not None:  # a missing app is bad input: say so before an hour of training
        from ecomine.serve.swap import check_app

        check_app(serve.address, serve.app)
    started = _now()
    run = f"{spec.name}-{started:%Y%m%d-%H%M%S}"
    pointer = registry.stage(spec.task, spec.stage)
    champion = pointer.version if pointer is not None else None
    record = RetrainRecord(
        pipeline=spec.name, run=run, task=spec.task, stage=spec.stage, status="failed",
        started_at=started.isoformat(), champion=champion, served=champion,
        window=spec.window.model_dump(mode="json") if spec.window else None,
    )
    warm_note = None
    if spec.warm_start == "champion" and champion is not None:
        folder = registry.fetch(spec.task, champion)
        if (folder / "model.safetensors").exists():
            train = _with_run(train, warm_start=str(folder))
        else:
            warm_note = f"scratch: the champion {champion} holds no single network (baseline or ensemble)"
    train = _with_run(train, name=run, tags=[*train.run.tags, f"pipeline:{spec.name}", "challenger"])
    task = get_task(spec.task)
    prepared = task.prepare(train)  # SpecError for an empty window: nothing trained, nothing written
    record.data = {"fingerprint": task.fingerprint(prepared), **data_summary(spec, prepared)}
    try:
        outcome = train_version(train, ray_address=ray_address, console=console, data=prepared)
    except SpecError:
        raise
    except BaseException as exc:  # noqa: BLE001 - any training failure leaves the champion as it was
        record.error = f"training failed: {_cause(exc)}"
        _finish(record, registry, t0)
        raise RetrainError(f"{spec.name}: {record.error} (champion {champion or 'none'} unchanged; record {record.uri})") from exc
    record.challenger = outcome.version
    record.warm_start = outcome.warm_start or ({"note": warm_note} if warm_note else None)
    record.reports["challenger_test"] = registry.get(spec.task, outcome.version).metrics.get("test")

    if champion is None:
        promote = spec.gate.first_version == "promote"
        record.gate = {"promote": promote, "reason": (
            f"{'promoted' if promote else 'refused'}: no champion holds {spec.stage} yet (gate.first_version: "
            f"{spec.gate.first_version})"), "primary": None, "guards": []}
    else:
        try:
            scores, statistic = score_versions(
                registry, spec, {"champion": champion, "challenger": outcome.version}, prepared)
            decision = gate(spec, scores, statistic, level=_promoted_level(registry, spec, champion))
        except Exception as exc:  # e.g. the champion's files no longer verify: nothing is promoted
            record.error = f"gate failed: {_cause(exc)}"
            _finish(record, registry, t0)
            raise RetrainError(f"{spec.name}: {record.error} (champion {champion} unchanged; record {record.uri})") from exc
        record.gate = decision.as_dict()
        promote = decision.promote
    if promote:
        registry.promote(spec.task, outcome.version, spec.stage)
        if serve is not None:
            try:
                from ecomine.serve.swap import swap_served_version

                record.swap = swap_served_version(serve.address, serve.app, spec.task, outcome.version,
                                                  timeout_s=serve.timeout_s)
            except BaseException as exc:  # noqa: BLE001 - keep the registry and Serve in agreement
                if champion is not None:
                    registry.rollback(spec.task, spec.stage)
                where = (f"{spec.stage} put back to {champion}" if champion is not None else
                         f"{spec.stage} holds {outcome.version} (there was no champion to put back)")
                record.error = f"swap failed: {' '.join(str(exc).split())[:800]}; {where}"
                _finish(record, registry, t0)
                raise RetrainError(f"{spec.name}: {record.error} (record {record.uri})") from exc
        record.status, record.served = "promoted", outcome.version
    else:
        record.status = "refused"
    _finish(record, registry, t0)
    return record


def _promoted_level(registry: Any, spec: PipelineSpec, version: str) -> float | None:
    """The primary metric `version` scored on the holdout of the run that promoted it (None: no such run)."""
    root = record_root(registry.root, spec.name)
    uris = [u for u in storage.list_prefix(root, options=registry.s3) if u.endswith("/record.json")]
    for uri in sorted(uris, reverse=True):
        rec = storage.read_json(uri, options=registry.s3)
        primary = (rec.get("gate") or {}).get("primary")
        if rec.get("status") == "promoted" and rec.get("challenger") == version and primary:
            if primary.get("metric") == spec.gate_metric():
                return float(primary["challenger"])
    return None


def _cause(exc: BaseException) -> str:
    """One line for a failure: Ray Train wraps a worker's exception with its whole traceback; its last line says what."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[-1][:400] if lines else ''}"


def _with_run(train: TrainSpec, **update: Any) -> TrainSpec:
    return train.model_copy(update={"run": train.run.model_copy(update=update)})


def rollback(spec: PipelineSpec, *, source: str | Path | None = None, serve: ServeTarget | None = None) -> RetrainRecord:
    """Point the stage back at its previous version (registry history) and swap Serve back to it."""
    t0 = time.perf_counter()
    train = spec.train_spec(source)
    registry = Registry(spec.registry_root(train))
    if serve is not None:
        from ecomine.serve.swap import check_app

        check_app(serve.address, serve.app)
    started = _now()
    before = registry.stage(spec.task, spec.stage)
    pointer = registry.rollback(spec.task, spec.stage)  # StageError when there is nothing to go back to
    record = RetrainRecord(
        pipeline=spec.name, run=f"{spec.name}-rollback-{started:%Y%m%d-%H%M%S}", task=spec.task, stage=spec.stage,
        status="rolled_back", started_at=started.isoformat(), champion=before.version if before else None,
        served=pointer.version,
    )
    registry.fetch(spec.task, pointer.version)  # every sha256 verified: the exact previous files
    if serve is not None:
        from ecomine.serve.swap import swap_served_version

        try:
            record.swap = swap_served_version(serve.address, serve.app, spec.task, pointer.version,
                                              timeout_s=serve.timeout_s)
        except BaseException as exc:  # noqa: BLE001
            registry.promote(spec.task, before.version, spec.stage)
            record.status, record.served = "failed", before.version
            record.error = f"swap failed: {' '.join(str(exc).split())[:800]}; {spec.stage} left at {before.version}"
            _finish(record, registry, t0)
            raise RetrainError(f"{spec.name}: {record.error}") from exc
    _finish(record, registry, t0)
    return record


# --------------------------------------------------------------------------- the record


def _finish(record: RetrainRecord, registry: Any, t0: float) -> None:
    record.finished_at = _now().isoformat()
    record.seconds = round(time.perf_counter() - t0, 2)
    folder = storage.join(record_root(registry.root, record.pipeline), record.run)
    record.uri = storage.join(folder, "record.json")
    try:
        storage.write_text(storage.join(folder, "report.md"), render_markdown(record), options=registry.s3)
        png = _gate_png(record)
        if png is not None:
            storage.write_bytes(storage.join(folder, "gate.png"), png, options=registry.s3)
        storage.write_json(record.uri, record.as_dict(), options=registry.s3)  # last: the record is complete
    except Exception:  # noqa: BLE001 - a record that cannot be written must not hide the run's outcome
        record.error = (record.error or "") + f" (record not written: {traceback.format_exc(limit=1).strip()[-300:]})"


def render_markdown(record: RetrainRecord) -> str:
    lines = [f"# retrain {record.pipeline}: {record.status}", "",
             f"- run `{record.run}` ({record.task}, stage `{record.stage}`), {record.started_at} .. {record.finished_at}"
             f" ({record.seconds} s)",
             f"- champion before: `{record.champion}`; challenger: `{record.challenger}`; "
             f"{record.stage} now: `{record.served}`"]
    if record.window:
        lines.append(f"- window: {json.dumps(record.window)}")
    if record.data:
        lines.append("- data: " + ", ".join(f"{k} {v}" for k, v in record.data.items() if k != "fingerprint"))
    if record.warm_start:
        lines.append(f"- warm start: {json.dumps(record.warm_start)}")
    if record.gate:
        lines += ["", f"**Gate**: {record.gate['reason']}", ""]
        rows = ([record.gate["primary"]] if record.gate.get("primary") else []) + list(record.gate.get("guards") or [])
        if rows:
            lines += ["| metric | champion | challenger | improvement | interval | tolerance |", "|---|---|---|---|---|---|"]
            for r in rows:
                tol = f"-{r['tolerance']:.1%}" if "tolerance" in r else "(primary)"
                lines.append(f"| {r['metric']} | {r['champion']:.4f} | {r['challenger']:.4f} | {r['improvement']:+.2%} | "
                             f"[{r['ci_low']:+.2%}, {r['ci_high']:+.2%}] | {tol} |")
    if record.swap:
        lines.append(f"\n- Serve: {record.swap['deployment']} / {record.swap['arm']}: {record.swap['previous']} -> "
                     f"{record.swap['version']} in {record.swap['seconds']} s")
    if record.error:
        lines.append(f"\n**Error**: {record.error}")
    return "\n".join(lines) + "\n"


def _gate_png(record: RetrainRecord) -> bytes | None:
    """Champion vs challenger per gated metric, the interval as an error bar (None: nothing was gated)."""
    rows = ([record.gate["primary"]] if record.gate and record.gate.get("primary") else []) + list(
        (record.gate or {}).get("guards") or [])
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(rows), 3.2))
    x = np.arange(len(rows))
    champ = [r["champion"] for r in rows]
    chall = [r["challenger"] for r in rows]
    ax.bar(x - 0.2, champ, 0.4, label=f"champion {record.champion}")
    # the improvement interval as a range of the challenger's value (relative to the champion)
    sign = [1.0 if r["mode"] == "max" else -1.0 for r in rows]
    ends = [sorted((r["champion"] * (1 + s * r["ci_low"]), r["champion"] * (1 + s * r["ci_high"])))
            for r, s in zip(rows, sign)]
    lo = [max(0.0, r["challenger"] - e[0]) for r, e in zip(rows, ends)]
    hi = [max(0.0, e[1] - r["challenger"]) for r, e in zip(rows, ends)]
    ax.bar(x + 0.2, chall, 0.4, yerr=[lo, hi], capsize=4, label=f"challenger {record.challenger}")
    ax.set_xticks(x, [r["metric"] for r in rows])
    ax.set_title(f"{record.pipeline}: {record.status}", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()
