"""The Ray cluster as ecomine meets it: join one or start a local one (`session.ensure_ray`, the only `ray.init`),
get a known error back out of Ray's wrappers (`session.surfaced`), and the Ray Train settings every training
run carries (`train_env.train_env`).

The ground floor beside `specs` and `storage`: train, tuning, the distributed data engine, batch scoring and
the demo call it; it imports Ray only when called.
"""
