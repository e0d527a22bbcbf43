"""`ecomine retrain`: the operating loop. A data window trains a challenger (`pipeline`), champion and
challenger answer the same holdout (`holdout`), a significance gate decides (`gate`), then promote and
hot-swap the served version (`serve.swap`).
"""
