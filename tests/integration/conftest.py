"""Fixtures for tests/integration (each block names its owner module)."""

# storage / registry: the loopback moto S3 server.
from tests.integration.s3_fixtures import s3_prefix, s3_server  # noqa: F401

# train / tune / serve: one Ray for the whole session, started with enough
# logical CPUs for what the tests schedule (2 Train workers + Serve replicas),
# since a Train run otherwise waits forever for CPUs a replica holds.
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def ray_session():
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
