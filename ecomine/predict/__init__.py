"""Ray-free inference: load a version or an ensemble (every sha256 verified), answer a request, rank, combine members.

Sits above `models` and `registry` and under everything that answers with a model:
`serve` wraps it in replicas, `score` in Ray Data actors, `retrain` runs its holdout
through it, `ecomine explain` and drift profiles call it directly. Imports no Ray.
"""
