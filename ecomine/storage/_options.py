"""How ecomine reaches S3: :class:`S3Options` and one lazily created boto3 client per option set.

Used by the S3 side of every storage function; the registry and serve pass the
options down. boto3 is imported on first use, never at import. The secret key and
session token are ``SecretStr``: repr, ``str`` and ``model_dump(mode="json")`` show
``**********``; only :func:`_client` (and the pyarrow filesystem of
``data.distributed``) read them with ``get_secret_value()``.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["S3Options"]


class S3Options(BaseModel):
    """How to reach S3. Unset fields fall back to the standard AWS environment variables.

    ``endpoint_url`` falls back to ``AWS_ENDPOINT_URL_S3`` then ``AWS_ENDPOINT_URL``
    (read when a client is first needed, never at import). Timeouts are short and
    retries few so that an unreachable endpoint fails within a couple of seconds.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = Field(default=None, repr=False)
    session_token: SecretStr | None = Field(default=None, repr=False)
    connect_timeout: float = Field(default=2.0, gt=0)
    read_timeout: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=2, ge=1, description="total attempts per request, first included")
    addressing_style: Literal["auto", "path", "virtual"] = "auto"

    def resolved(self) -> S3Options:
        """These options with unset fields filled from the environment, as of now."""
        env = os.environ
        return self.model_copy(
            update={
                "endpoint_url": self.endpoint_url
                or env.get("AWS_ENDPOINT_URL_S3")
                or env.get("AWS_ENDPOINT_URL")
                or None,
                "region": self.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
                "access_key_id": self.access_key_id or env.get("AWS_ACCESS_KEY_ID") or None,
                "secret_access_key": self.secret_access_key or _secret(env.get("AWS_SECRET_ACCESS_KEY")),
                "session_token": self.session_token or _secret(env.get("AWS_SESSION_TOKEN")),
            }
        )


def _secret(value: str | None) -> SecretStr | None:
    # model_copy(update=...) does not validate, so values from the environment are wrapped here.
    return SecretStr(value) if value else None


def _reveal(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


_CLIENTS: dict[tuple[int, S3Options], Any] = {}
_CLIENTS_LOCK = threading.Lock()


def _client(options: S3Options | None) -> Any:
    """One cached boto3 S3 client per (process, resolved options); created on first use.

    boto3 is imported here, not at module import: local-only users never pay for it.
    """
    resolved = (options or S3Options()).resolved()
    key = (os.getpid(), resolved)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            import boto3
            from botocore.config import Config

            session = boto3.session.Session(
                aws_access_key_id=resolved.access_key_id,
                aws_secret_access_key=_reveal(resolved.secret_access_key),
                aws_session_token=_reveal(resolved.session_token),
                region_name=resolved.region,
            )
            client = session.client(
                "s3",
                endpoint_url=resolved.endpoint_url,
                config=Config(
                    connect_timeout=resolved.connect_timeout,
                    read_timeout=resolved.read_timeout,
                    retries={"total_max_attempts": resolved.max_attempts, "mode": "standard"},
                    s3={"addressing_style": resolved.addressing_style},
                ),
            )
            _CLIENTS[key] = client
    return client
