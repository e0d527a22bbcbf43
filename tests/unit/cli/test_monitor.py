"""`ecomine monitor` bad input without a served app: one line naming it, exit 2."""

from __future__ import annotations

import socket

from typer.testing import CliRunner

from ecomine.cli import monitor as monitor_cli
from ecomine.cli.main import app


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def test_unreachable_url_is_one_line_and_exit_2() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    result = CliRunner().invoke(app, ["monitor", "--url", url, "--timeout", "2"])
    assert result.exit_code == monitor_cli.EXIT_BAD_INPUT == 2
    assert f"--url: cannot reach {url}/v1/drift" in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_unknown_task_is_bad_input() -> None:
    result = CliRunner().invoke(app, ["monitor", "--task", "forecast"])
    assert result.exit_code == 2 and "--task: 'forecast' is not one of" in result.output


def test_help_states_the_exit_codes() -> None:
    text = " ".join(CliRunner().invoke(app, ["monitor", "--help"]).output.split())
    assert "0 no drift; 1 drift found" in text and "2 bad input" in text


def _registered(tmp_path, n_items: int = 200):
    """A recommend version with items.json and a profile whose histories are 5-15 items of the top 100."""
    import json

    import numpy as np

    from ecomine.data.drift import PROFILE_FILE, build_profile, recommend_observation
    from ecomine.registry import Registry

    rng = np.random.default_rng(0)
    items = [f"i{n}" for n in range(n_items)]
    ranks = np.arange(0, n_items + 1)  # vocab id k has rank k (1 = most bought)
    obs = [recommend_observation(int(n), rng.integers(1, 100, size=int(n)), ranks, None) | {"top1_probability": 0.1}
           for n in rng.integers(5, 16, size=500)]
    values = {k: np.concatenate([np.atleast_1d(o[k]) for o in obs if k in o]) for k in obs[0]}
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "items.json").write_text(json.dumps({"items": items, "texts": [None] * n_items}))
    (folder / PROFILE_FILE).write_text(build_profile("recommend", values, lookups={"item_rank": ranks.tolist()}).dumps())
    registry = tmp_path / "registry"
    Registry(str(registry)).register("recommend", folder, spec={"task": "recommend"}, data_fingerprint="t", metrics={},
                                     version="rec-1")
    return registry, items


def _log(tmp_path, rows):
    from ecomine.api.events import EventsRequest
    from ecomine.live import SQLiteHistoryStore, stored_events
    from ecomine.live.event_log import drain

    store = SQLiteHistoryStore(tmp_path / "h.sqlite")
    for start in range(0, len(rows), 1000):
        req = EventsRequest.model_validate({"events": rows[start:start + 1000]})
        store.append(stored_events(req.events, "salt", log=True))
    drain(store, str(tmp_path / "log"), owner="t")
    store.close()
    return tmp_path / "log"


def test_an_event_log_like_the_training_data_is_ok_and_one_of_unknown_items_drifts(tmp_path) -> None:
    import json

    import numpy as np

    registry, items = _registered(tmp_path)
    rng = np.random.default_rng(1)
    like = [{"user_id": f"u{u}", "item_id": items[int(rng.integers(0, 99))], "event": "view"}
            for u in range(300) for _ in range(int(rng.integers(5, 16)))]
    log = _log(tmp_path / "like", like)
    ok = CliRunner().invoke(app, ["monitor", "--events", str(log), "--registry", str(registry), "--version", "rec-1",
                                  "--json"])
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.output)[0]
    assert report["arm"] == "events (300 users)" and report["reference"] == "recommend/rec-1"
    status = {f["feature"]: f["status"] for f in report["features"]}
    assert status == {"history_length": "ok", "item_popularity_rank": "ok", "unknown_item_share": "ok",
                      "top1_probability": "skipped"}
    new = [{"user_id": f"u{u}", "item_id": f"new-{int(rng.integers(0, 50))}", "event": "cart"}
           for u in range(300) for _ in range(8)]
    drifted = CliRunner().invoke(app, ["monitor", "--events", str(_log(tmp_path / "new", new)),
                                       "--registry", str(registry), "--version", "rec-1"])
    assert drifted.exit_code == 1 and "recommend.events (300 users).unknown_item_share" in " ".join(drifted.output.split())


def test_bad_event_monitor_input_is_one_line_exit_2(tmp_path) -> None:
    registry, _ = _registered(tmp_path)
    runner = CliRunner()
    for args, needle in [
        (["--events", str(tmp_path / "none"), "--version", "rec-1"], "holds no events"),
        (["--events", str(tmp_path / "none"), "--version", "rec-9"], "--version:"),
        (["--events", str(tmp_path / "none"), "--version", "rec-1", "--since", "yesterday"], "--since: 'yesterday'"),
        (["--events", str(tmp_path / "none"), "--task", "risk"], "--task: an event log feeds the recommender"),
    ]:
        got = runner.invoke(app, ["monitor", "--registry", str(registry), *args])
        assert got.exit_code == 2 and needle in " ".join(got.output.split()), (args, got.output)
        assert "Traceback" not in got.output
