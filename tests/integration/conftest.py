"""Fixtures for tests/integration (each block names its owner module)."""

# storage / registry: the loopback moto S3 server.
from tests.integration.s3_fixtures import s3_prefix, s3_server  # noqa: F401
