"""Loopback S3 for integration tests: moto's real HTTP server on 127.0.0.1.

boto3 (and pyarrow, Ray workers started afterwards) reach it through
AWS_ENDPOINT_URL like any S3 endpoint; nothing in-process is patched. Import the
fixtures into a conftest: ``from tests.integration.s3_fixtures import s3_server, s3_prefix  # noqa``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import pytest

__all__ = ["S3_BUCKET", "s3_server", "s3_prefix"]

S3_BUCKET = "ecomine-test"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """Start moto's ThreadedMotoServer on a free loopback port, point the AWS env at it,
    create ``S3_BUCKET``; yield the endpoint URL. Env is restored and the server stopped after."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = pytest.MonkeyPatch()
    try:
        env.setenv("AWS_ENDPOINT_URL", endpoint)
        env.delenv("AWS_ENDPOINT_URL_S3", raising=False)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.delenv("AWS_SESSION_TOKEN", raising=False)
        env.delenv("AWS_PROFILE", raising=False)
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        env.setenv("AWS_REGION", "us-east-1")
        boto3.session.Session().client("s3", endpoint_url=endpoint).create_bucket(Bucket=S3_BUCKET)
        yield endpoint
    finally:
        env.undo()
        server.stop()


@pytest.fixture
def s3_prefix(s3_server: str, request: pytest.FixtureRequest) -> str:
    """A fresh ``s3://ecomine-test/<test-name>-<hex>`` prefix for one test (nothing under it yet)."""
    name = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:60]
    return f"s3://{S3_BUCKET}/{name}-{secrets.token_hex(3)}"
