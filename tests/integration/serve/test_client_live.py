"""The client SDK against a live Serve app: typed errors, retries on a killed connection, async parity."""

from __future__ import annotations

import asyncio
import socket
import threading
from urllib.parse import urlparse

import pytest

from ecomine.client import AsyncEcomineClient, AuthError, EcomineClient, Retry, ValidationError
from tests.integration.serve.conftest import API_KEY

pytestmark = pytest.mark.integration
FAST = Retry(attempts=4, backoff=0.05, max_backoff=0.2)


class KillFirstConnections:
    """A loopback TCP proxy that drops its first `kill` connections mid-request, then forwards."""

    def __init__(self, target: str, kill: int) -> None:
        u = urlparse(target)
        self.target = (u.hostname, u.port)
        self.prefix = u.path
        self.kill = kill
        self.killed = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}{self.prefix}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.killed < self.kill:
                self.killed += 1
                conn.recv(65536)  # read the request, then hang up without an answer
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                conn.close()
                continue
            upstream = socket.create_connection(self.target)
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


def test_retries_through_a_killed_connection(full, serving_data) -> None:
    proxy = KillFirstConnections(full.url, kill=2)
    try:
        with EcomineClient(base_url=proxy.url, api_key=API_KEY, retry=FAST, timeout=30) as c:
            user = next(iter(serving_data.users))
            out = c.recommend(user_id=user, k=5)
        assert proxy.killed == 2 and len(out.items) == 5
    finally:
        proxy.close()


def test_typed_errors_carry_the_server_message(full, serving_data) -> None:
    user = next(iter(serving_data.users))
    with EcomineClient(base_url=full.url, api_key=API_KEY, retry=FAST) as c:
        with pytest.raises(ValidationError) as e:
            c.recommend(user_id=user, k=500)  # the app's limit is 50
        assert 400 <= e.value.status < 500 and "k" in e.value.message
    with EcomineClient(base_url=full.url, api_key="wrong", retry=FAST) as c, pytest.raises(AuthError):
        c.recommend(user_id=user, k=5)


def test_async_client_matches_sync(full, serving_data) -> None:
    users = list(serving_data.users)[:6]
    with EcomineClient(base_url=full.url, api_key=API_KEY, retry=FAST) as c:
        sync = [c.recommend(user_id=u, k=5) for u in users]
        models = c.models()

    async def go():
        async with AsyncEcomineClient(base_url=full.url, api_key=API_KEY, retry=FAST) as c:
            return await c.recommend_many(users, k=5, concurrency=3), await c.models()

    many, amodels = asyncio.run(go())
    assert [[i.item_id for i in r.items] for r in many] == [[i.item_id for i in r.items] for r in sync]
    # same tasks, routes and champions (traffic counters and drift windows move between the two calls)
    brief = lambda m: {t: (i.route, i.champion.model_dump(exclude={"drift"})) for t, i in m.tasks.items()}  # noqa: E731
    assert brief(amodels) == brief(models)
