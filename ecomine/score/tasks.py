"""What batch scoring does per task: the columns it reads, the rows it keeps, how one batch is scored.

Sits in `score` under `score.batch` (the driver's checks and the Ray Data run, which
know no task) and above `predict` (whose functions a Serve replica answers with, so a
scored row is the answer Serve gives for the same history, items or order). One
`ScoreTask` per task, registered in `SCORE_TASKS`: a fourth task adds its entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

from ecomine.specs import ScoreSpec

if TYPE_CHECKING:
    from ecomine.predict.state import ModelState

__all__ = ["ScoreError", "ScoreTask", "SCORE_TASKS", "score_task", "ROW"]

ROW = "row"  # risk: the line's position in the input file, kept in the output to join back on


class ScoreError(ValueError):
    """Bad input to a scoring run (a missing version or input, a column or horizon the model refuses);
    one line naming the field and the value. Nothing is written."""


@dataclass(frozen=True)
class ScoreTask:
    """One task's part of a scoring run."""

    name: str
    required: tuple[str, ...]  # input columns it reads; the first (`user_id` / `item_id`) keys an output row
    keep: Callable[[pl.DataFrame], pl.DataFrame]  # the checked input -> the rows and columns scored
    from_events: Callable[[pl.DataFrame], pl.DataFrame]  # `inputs: {data: ...}`: the training events -> the input
    score: Callable[[ModelState, ScoreSpec, pl.DataFrame], pl.DataFrame]  # one batch -> its output rows, in order
    horizon: bool = False  # the spec's horizon is checked against what the version was trained for


def score_task(name: str) -> ScoreTask:
    return SCORE_TASKS[name]


# --------------------------------------------------------------------------- recommend


def _recommend_inputs(events: pl.DataFrame) -> pl.DataFrame:
    from ecomine.data.features import user_sequences

    # as `ecomine data build` writes user_sequences.parquet (Serve's users table)
    return user_sequences(events, dedupe_consecutive=False).select("user_id", "items")


def _recommend(state: ModelState, spec: ScoreSpec, df: pl.DataFrame) -> pl.DataFrame:
    from ecomine.predict.answers import finish_recommend, plan_recommend
    from ecomine.predict.runtime import run_jobs

    plans = []
    for items in df["items"].to_list():
        # what the ingress sends for a user of its users table: the last max_history items
        history = [str(i) for i in (items or [])][-spec.max_history:]
        req = {"history": history, "k": spec.k, "exclude": [], "exclude_history": spec.exclude_history,
               "categories": None, "fallback_reason": None}
        plans.append(plan_recommend(state, req))
    todo = [n for n, (job, _) in enumerate(plans) if job is not None]
    rows = run_jobs([(state, plans[n][0]) for n in todo]) if todo else []
    row_of = dict(zip(todo, rows))
    answers = [finish_recommend(state, ctx, row_of.get(n)) for n, (_, ctx) in enumerate(plans)]
    return pl.DataFrame(
        {
            "user_id": df["user_id"].cast(pl.String),
            "items": [[i["item_id"] for i in a["items"]] for a in answers],
            "scores": [[i["score"] for i in a["items"]] for a in answers],
            "fallback": [a["fallback_code"] for a in answers],
        },
        schema={"user_id": pl.String, "items": pl.List(pl.String), "scores": pl.List(pl.Float64), "fallback": pl.String},
    )


# --------------------------------------------------------------------------- demand


def _purchased_items(events: pl.DataFrame) -> pl.DataFrame:
    return events.filter(pl.col("event") == "purchase").select("item_id")


def _quantile_column(q: float) -> str:
    return f"p{q * 100:g}"


def _demand(state: ModelState, spec: ScoreSpec, df: pl.DataFrame) -> pl.DataFrame:
    from ecomine.predict.answers import demand_job
    from ecomine.predict.ranking import Rejected
    from ecomine.predict.runtime import run_jobs

    req = {"item_ids": df["item_id"].to_list(), "horizon": spec.horizon, "quantiles": spec.quantiles}
    try:
        job = demand_job(state, req)
    except Rejected as exc:
        raise ScoreError(f"horizon: {exc.msg}") from None
    forecasts = run_jobs([(state, job)])[0]["forecasts"]
    out: dict[str, Any] = {"item_id": [f["item_id"] for f in forecasts], "fallback": [f["fallback"] for f in forecasts]}
    for n, q in enumerate(spec.quantiles):
        out[_quantile_column(q)] = [f["values"][n] for f in forecasts]
    schema = {"item_id": pl.String, "fallback": pl.Boolean, **{_quantile_column(q): pl.List(pl.Float64) for q in spec.quantiles}}
    return pl.DataFrame(out, schema=schema)


# --------------------------------------------------------------------------- risk

_RISK_REQUIRED = ("item_id", "quantity")
_RISK_OPTIONAL = ("order_id", "user_id", "ts", "country", "price")


def _risk_lines(table: pl.DataFrame) -> pl.DataFrame:
    keep = [c for c in (*_RISK_REQUIRED, *_RISK_OPTIONAL) if c in table.columns]
    return table.select(keep).with_row_index(ROW)


def _risk(state: ModelState, spec: ScoreSpec, df: pl.DataFrame) -> pl.DataFrame:
    from pydantic import ValidationError

    from ecomine.api.schema import Order
    from ecomine.predict.answers import dated_orders, risk_job
    from ecomine.predict.runtime import run_jobs

    # One order per line, checked by the API's own request model and completed as the ingress
    # completes a request (ts: now when absent): its probability is that line's.
    orders = []
    for r in df.iter_rows(named=True):
        raw = {"order_id": _text(r.get("order_id")), "user_id": _text(r.get("user_id")), "ts": r.get("ts"),
               "country": _text(r.get("country")),
               "lines": [{"item_id": _text(r["item_id"]), "quantity": r["quantity"], "price": r.get("price")}]}
        try:
            order = Order.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"] if p not in ("lines", 0))
            raise ScoreError(f"inputs: row {r[ROW]}: {where}: {first['msg']} (got {first.get('input')!r})") from None
        orders.append(order.model_dump())
    probs = run_jobs([(state, risk_job({"orders": dated_orders(orders)}))])[0]
    thr = float(state.extra["threshold"])
    return df.with_columns(pl.Series("probability", probs, dtype=pl.Float64),
                           pl.Series("flagged", [p >= thr for p in probs], dtype=pl.Boolean))


def _text(v: Any) -> str | None:
    return None if v is None else str(v)


SCORE_TASKS: dict[str, ScoreTask] = {
    "recommend": ScoreTask("recommend", ("user_id", "items"), lambda t: t.select("user_id", "items"),
                           _recommend_inputs, _recommend),
    "demand": ScoreTask("demand", ("item_id",),
                        lambda t: t.select(pl.col("item_id").cast(pl.String)).unique(maintain_order=True).drop_nulls(),
                        _purchased_items, _demand, horizon=True),
    "risk": ScoreTask("risk", _RISK_REQUIRED, _risk_lines, _purchased_items, _risk),
}
