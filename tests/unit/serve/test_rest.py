"""serve.rest: Ray's documented token precedence, and one-line errors for a dashboard that is absent or
wants a token. The routes against a real dashboard are the integration suite's (serve up/down/status, swap)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ecomine.cluster.session import free_port
from ecomine.serve.control import ServeConfigError, serve_client
from ecomine.serve.rest import ServeRest, ServeRestError, ray_auth_token


def test_the_token_follows_rays_precedence(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert ray_auth_token({}) is None  # nothing set up: no header
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("from-home\n")
    assert ray_auth_token({}) == "from-home"
    named = tmp_path / "tok"
    named.write_text("from-path")
    assert ray_auth_token({"RAY_AUTH_TOKEN_PATH": str(named)}) == "from-path"
    assert ray_auth_token({"RAY_AUTH_TOKEN": "from-env", "RAY_AUTH_TOKEN_PATH": str(named)}) == "from-env"
    named.write_text("")
    with pytest.raises(ServeRestError, match=r"RAY_AUTH_TOKEN_PATH=.*tok: the token file is empty"):
        ray_auth_token({"RAY_AUTH_TOKEN_PATH": str(named)})
    with pytest.raises(ServeRestError, match=r"RAY_AUTH_TOKEN_PATH=.*missing: cannot read the token"):
        ray_auth_token({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "missing")})


def test_no_dashboard_is_one_line_naming_the_address() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServeConfigError, match=rf"{url}: no Ray dashboard answers .*ray start --head") as err:
        serve_client(url)
    assert "\n" not in str(err.value)
    with pytest.raises(ServeRestError, match="expected http://host:port"):
        ServeRest("127.0.0.1:8265")


class _TokenDashboard(BaseHTTPRequestHandler):
    """Answers like a token-protected dashboard: 401 without the right Bearer header."""

    def _answer(self) -> None:
        if self.headers.get("Authorization") != "Bearer s3cret":
            self.send_response(401)
            self.end_headers()
            return
        refused = self.command == "PUT"  # as the dashboard answers a config Serve cannot take
        self.send_response(400 if refused else 200)
        self.end_headers()
        self.wfile.write(b"bad config: applications.0.name" if refused else b'{"version": "x", "applications": {}}')

    do_GET = do_PUT = do_DELETE = _answer

    def log_message(self, *args) -> None:
        pass


def test_the_token_is_sent_and_a_refusal_names_the_route() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenDashboard)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(ServeRestError, match=r"/api/ray/version: 401 - the dashboard wants Ray's auth token"):
            ServeRest(url, token="wrong")
        with ServeRest(url, token="s3cret") as client:
            assert client.get_serve_details()["applications"] == {}
            client.delete_applications()
            with pytest.raises(ServeRestError, match=r"/api/serve/applications/: PUT answered 400: bad config: applications.0.name"):
                client.deploy_applications({"applications": []})
        with pytest.raises(RuntimeError, match="closed"):  # the block closed its connection pool
            client.get_serve_details()
    finally:
        server.shutdown()
