"""Ray-free inference: load a version or an ensemble (every sha256 verified), answer a request, rank, combine members.

Sits above `models` and `registry` and under everything that answers with a model:
`serve` wraps it in replicas, `score` in Ray Data actors, `retrain` runs its holdout
through it, `ecomine explain` and drift profiles call it directly. Imports no Ray.

Inside, lowest first: `state` (a member, the served snapshot, load errors), `ranking`,
`answers` and `combine`; one module per task (`recommend_task`, `demand_task`, `risk_task`:
how its versions prepare, run a batch, explain, compare and log); `tasks` (their registry, the
one place a task's name is looked up); `runtime` (load a version or an ensemble, run a batch)
and `explain`, which dispatch through `tasks`.
"""
