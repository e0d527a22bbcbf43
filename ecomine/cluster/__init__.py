"""The Ray cluster as ecomine meets it: join one or start a local one (`session.ensure_ray`, the only `ray.init`),
and get a known error back out of Ray's wrappers (`session.surfaced`).

The ground floor beside `specs` and `storage`: train, tuning, the distributed data engine, batch scoring and
the demo call it; it imports Ray only when called.
"""
