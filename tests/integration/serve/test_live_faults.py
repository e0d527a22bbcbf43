"""Live events under faults, on a served app with a real Redis: SIGKILL and restart under an event stream,
an ingress replica killed mid-stream, and an SQLite store that is locked. No acknowledged event is lost
or stored twice; what is refused is a JSON 503 with Retry-After; recommendations answer from the
training snapshot meanwhile."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid

import httpx
import polars as pl
import pytest

from tests.integration.serve.conftest import SMALL, ServeTarget, live_paths
from tests.redis_server import RedisServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def redis_app(serve_base: str, serving_data, tmp_path_factory):
    from ray import serve

    from ecomine.serve.app import build

    server = RedisServer(tmp_path_factory.mktemp("redis-faults")).start()
    log = tmp_path_factory.mktemp("redis-events")
    args = {
        "registry": str(serving_data.registry),
        "recommend": {"champion": {"version": serving_data.rec_a}, "users_uri": str(serving_data.users_uri),
                      "resources": SMALL},
        "auth": {"api_keys_env": None},
        "ingress": {"num_cpus": 0.1, "colocate": True, "retry_after_s": 1, "num_replicas": 2,
                    "runtime_env": {"env_vars": {"ECOMINE_FAULTS_REDIS": server.url}}},
        "live": {"store": "redis", "redis_url_env": "ECOMINE_FAULTS_REDIS", "redis_prefix": "faults",
                 "log_uri": str(log), "log_flush_s": 0.5, "timeout_s": 0.5},
    }
    serve.run(build(args), name="liveredis", route_prefix="/liveredis")
    try:
        yield ServeTarget(f"{serve_base}/liveredis", "liveredis", args, {}), server, log
    finally:
        serve.delete("liveredis")
        server.stop()


def test_redis_killed_and_restarted_under_a_stream_loses_no_acknowledged_event(redis_app, serving_data) -> None:
    import redis

    from ecomine.live.event_log import read_event_log

    app, server, log = redis_app
    run = uuid.uuid4().hex[:6]
    acked: list[str] = []
    refused: list[httpx.Response] = []
    stop = threading.Event()

    def stream() -> None:
        n = 0
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                ids = [f"{run}-{n}-{k}" for k in range(5)]
                body = {"events": [{"user_id": f"s{run}-{n % 7}", "item_id": serving_data.items[k], "event": "view",
                                    "event_id": i} for k, i in enumerate(ids)]}
                r = http.post(app.url + "/v1/events", json=body)
                if r.status_code == 200:
                    acked.extend(ids)
                    n += 1
                else:
                    refused.append(r)  # the same batch again next time: as a client's retry would
                    time.sleep(0.05)

    writer = threading.Thread(target=stream)
    writer.start()
    try:
        deadline = time.monotonic() + 30
        while len(acked) < 50:
            assert time.monotonic() < deadline, "no events accepted before the kill"
            time.sleep(0.05)
        server.kill9()
        while not refused:
            assert time.monotonic() < deadline + 30, "the outage was never seen"
            time.sleep(0.05)
        # meanwhile a known user's recommendation answers from the snapshot, and says why
        user = next(iter(serving_data.users))
        rec = httpx.post(app.url + "/v1/recommend", json={"user_id": user, "k": 5}, timeout=10)
        assert rec.status_code == 200, rec.text
        assert rec.json()["history_source"] == "snapshot" and "live history unavailable" in rec.json()["fallback_reason"]
        during = len(acked)
        server.start()
        while len(acked) < during + 50:
            assert time.monotonic() < deadline + 90, "no events accepted after the restart"
            time.sleep(0.05)
    finally:
        stop.set()
        writer.join(timeout=30)
    bad = [r for r in refused if r.status_code != 503 or "Retry-After" not in r.headers
           or "live events unavailable" not in r.json()["detail"]]
    assert not bad, [(r.status_code, r.text[:200]) for r in bad[:3]]
    # every acknowledged event is in the store's histories ...
    client = redis.Redis.from_url(server.url)
    stored = sum(client.llen(k) for k in client.scan_iter("faults:h:*"))
    assert stored >= len(acked)  # (an unacknowledged batch the outage cut may be stored too: its retry is a duplicate)
    # ... and, once drained, in the log exactly once
    deadline = time.monotonic() + 30
    while True:
        logged = read_event_log(str(log))
        logged_ids = set(logged["event_id"].to_list())
        if set(acked) <= logged_ids or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert set(acked) <= logged_ids, f"{len(set(acked) - logged_ids)} acknowledged events are not in the log"
    assert logged.height == len(logged_ids) and stored == len(logged_ids)
    print(f"\n[faults] acknowledged {len(acked)}, refused {len(refused)} during the outage, logged {len(logged_ids)}")


def test_an_ingress_replica_killed_mid_stream_stores_each_sdk_event_once(redis_app, serving_data) -> None:
    import ray
    import redis

    from ecomine.client import EcomineClient, Retry
    from ecomine.live import user_key
    from ecomine.live.event_log import read_event_log

    app, server, log = redis_app
    prefix = "SERVE_REPLICA::liveredis#Ingress#"
    replicas = sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix))
    assert len(replicas) == 2, replicas
    run = uuid.uuid4().hex[:6]
    users = [f"k{run}-{u}" for u in range(50)]  # ~15 events each: far below the store's max_len
    sent: list[str] = []
    stats = {"duplicates": 0}
    errors: list[str] = []
    stop = threading.Event()

    def stream() -> None:
        n = 0
        with EcomineClient(base_url=app.url, timeout=10, retry=Retry(attempts=20, backoff=0.1, max_backoff=1.0)) as c:
            while not stop.is_set():
                batch = [{"user_id": users[(5 * n + k) % 50], "item_id": serving_data.items[k], "event": "view",
                          "event_id": f"{run}-{n}-{k}"} for k in range(5)]
                try:
                    got = c.events(events=batch)  # retried through the kill with the same event_ids
                except Exception as exc:  # noqa: BLE001 - every SDK failure is what the test counts
                    errors.append(repr(exc))
                    continue
                sent.extend(e["event_id"] for e in batch)
                stats["duplicates"] += got.duplicates
                n += 1

    writer = threading.Thread(target=stream)
    writer.start()
    try:
        time.sleep(1.5)
        ray.kill(ray.get_actor(replicas[0], namespace="serve"), no_restart=True)
        time.sleep(4.0)  # the stream runs on through the other replica and the replacement
    finally:
        stop.set()
        writer.join(timeout=60)
    assert not errors, errors[:3]
    assert len(sent) > 50
    client = redis.Redis.from_url(server.url)
    salt = client.get("faults:salt").decode()
    stored = sum(client.llen(f"faults:h:{user_key(u, salt)}") for u in users)
    assert stored == len(sent) == len(set(sent))  # each acknowledged event once, a retried one not twice
    deadline = time.monotonic() + 60  # the killed replica may have held the drain lease (15 s)
    while True:
        logged = read_event_log(str(log)).filter(pl.col("event_id").str.starts_with(f"{run}-"))  # one read: it grows
        if logged.height >= len(sent) or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert sorted(logged["event_id"].to_list()) == sorted(sent)
    print(f"\n[replica kill] {len(sent)} events acknowledged through the SDK, {stats['duplicates']} retried "
          "duplicates stored once")


def test_a_locked_sqlite_store_is_a_503_then_recovers(full: ServeTarget, serving_data) -> None:
    path, _ = live_paths(serving_data)
    user = f"locked-{uuid.uuid4().hex[:8]}"
    body = {"events": [{"user_id": user, "item_id": serving_data.items[0], "event": "view", "event_id": user}]}
    holder = sqlite3.connect(str(path), timeout=1)
    holder.execute("BEGIN EXCLUSIVE")  # another writer holds the file past the store's timeout
    try:
        r = full.post("/v1/events", body)
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] and "database is locked" in r.json()["detail"]
    finally:
        holder.rollback()
        holder.close()
    ok = full.post("/v1/events", body)
    assert ok.status_code == 200 and ok.json()["accepted"] == 1
