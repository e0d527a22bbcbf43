"""Ray Serve's REST API, spoken by httpx: read, deploy and delete a cluster's Serve applications.

Sits at the bottom of Serve control: ``serve.control`` (``serve_client``) hands a ``ServeRest``
to ``serve.swap`` and ``ecomine serve up | down | status`` (``cli.serve``). It speaks the
dashboard's documented ``/api/serve/applications/`` routes (GET the details, PUT a whole
config, DELETE every application: what ``serve deploy`` and ``serve status`` send) and
Ray's documented token authentication (``Authorization: Bearer``, the token from
``RAY_AUTH_TOKEN``, the file ``RAY_AUTH_TOKEN_PATH`` names, or ``~/.ray/auth_token``).
Written over httpx rather than through ``ray.dashboard...ServeSubmissionClient``: that client is
not Ray's public API and sends the token only through ``ray._private``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from ecomine.specs import SpecError

__all__ = ["ServeRest", "ServeRestError", "ray_auth_token", "APPLICATIONS_PATH", "VERSION_PATH"]

APPLICATIONS_PATH = "/api/serve/applications/"
VERSION_PATH = "/api/ray/version"
_DEFAULT_TOKEN_FILE = Path("~/.ray/auth_token")


class ServeRestError(SpecError):
    """The dashboard could not be reached or refused a call: one line naming the URL and the answer."""


def ray_auth_token(env: dict[str, str] | None = None) -> str | None:
    """The token Ray's documented precedence picks, or None where none is set up.

    ``RAY_AUTH_TOKEN``; else the file ``RAY_AUTH_TOKEN_PATH`` names (an unreadable or empty one is
    an error, as Ray treats it); else ``~/.ray/auth_token`` when it exists. A dashboard without
    token auth ignores the header, so it is sent whenever a token is found."""
    env = os.environ if env is None else env
    if env.get("RAY_AUTH_TOKEN", "").strip():
        return env["RAY_AUTH_TOKEN"].strip()
    named = env.get("RAY_AUTH_TOKEN_PATH")
    if named:
        try:
            token = Path(named).expanduser().read_text().strip()
        except OSError as exc:
            raise ServeRestError(f"RAY_AUTH_TOKEN_PATH={named}: cannot read the token ({exc.strerror})") from None
        if not token:
            raise ServeRestError(f"RAY_AUTH_TOKEN_PATH={named}: the token file is empty")
        return token
    default = _DEFAULT_TOKEN_FILE.expanduser()
    try:
        return default.read_text().strip() or None
    except OSError:
        return None


class ServeRest:
    """A Ray dashboard's Serve routes. Construction checks the dashboard answers (``/api/ray/version``)."""

    def __init__(self, url: str, timeout_s: float = 30.0, token: str | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ServeRestError(f"dashboard address {url!r}: expected http://host:port (the Ray dashboard, port 8265 by default)")
        self.url = url.rstrip("/")
        token = token if token is not None else ray_auth_token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)
        self._call("GET", VERSION_PATH)

    def _call(self, method: str, path: str, json: Any = None) -> httpx.Response:
        try:
            response = self._http.request(method, path, json=json)
        except httpx.HTTPError as exc:
            raise ServeRestError(f"{self.url}: no Ray dashboard answers ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None
        if response.status_code in (401, 403):
            raise ServeRestError(
                f"{self.url}{path}: {response.status_code} - the dashboard wants Ray's auth token "
                "(set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH, or put it in ~/.ray/auth_token: `ray get-auth-token`)"
            )
        if response.status_code != 200:
            raise ServeRestError(f"{self.url}{path}: {method} answered {response.status_code}: {' '.join(response.text.split())[:300]}")
        return response

    def get_serve_details(self) -> dict[str, Any]:
        """Every application's status, message and deployed config (Ray's ``ServeInstanceDetails``)."""
        return self._call("GET", APPLICATIONS_PATH).json()

    def deploy_applications(self, config: dict[str, Any]) -> None:
        """Declare the whole set of applications (a ``ServeDeploySchema``), as ``serve deploy`` does."""
        self._call("PUT", APPLICATIONS_PATH, json=config)

    def delete_applications(self) -> None:
        """Delete every Serve application on the cluster, as ``serve shutdown`` does."""
        self._call("DELETE", APPLICATIONS_PATH)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ServeRest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
