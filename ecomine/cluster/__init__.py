"""The Ray cluster as ecomine meets it: join one or start a local one (`session.ensure_ray`, the only `ray.init`),
get a known error back out of Ray's wrappers (`session.surfaced`), and the environment variables ecomine sets
for Ray's processes (`env`: a one-node Ray's, and the Ray Train settings every training run carries).

The ground floor beside `specs` and `storage`: train, tuning, the distributed data engine, batch scoring and
the demo call it; it imports Ray only when called.
"""
