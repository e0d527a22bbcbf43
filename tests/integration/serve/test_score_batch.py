"""`ecomine score`: Ray Data batch scoring answers what Serve answers, and commits all or nothing.

Here beside the Serve tests on purpose: it scores the versions of the same session registry
(``serving_data``) and compares with the live ``full`` app (same users table, history cap 100,
stand-in demand/risk loaders) and with ``serve.runtime`` called one request at a time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from ecomine.score.batch import SUCCESS_FILE, ScoreError, run_scoring
from ecomine.specs import ScoreSpec
from tests.integration.serve.conftest import STANDIN

pytestmark = pytest.mark.integration


def _spec(data, out: Path, **kw) -> ScoreSpec:
    return ScoreSpec.model_validate({"registry": str(data.registry), "output": str(out), "num_cpus": 0.5, **kw})


def _read(out: Path) -> pl.DataFrame:
    marker = json.loads((out / SUCCESS_FILE).read_text())
    return pl.concat([pl.read_parquet(out / name) for name in marker["parts"]])


def test_recommend_topk_equals_runtime_and_live_serve(serving_data, full, tmp_path: Path) -> None:
    from ecomine.registry import Registry
    from ecomine.predict.answers import finish_recommend, plan_recommend
    from ecomine.predict.runtime import load_state, run_jobs

    spec = _spec(serving_data, tmp_path / "top", task="recommend", version="production", k=10, max_history=100,
                 inputs={"kind": "table", "uri": str(serving_data.users_uri)}, actors=2, batch_size=16)
    outcome = run_scoring(spec)
    got = _read(tmp_path / "top")
    assert outcome.version == serving_data.rec_a and outcome.rows_in == len(serving_data.users) == got.height
    assert got["user_id"].to_list() == list(serving_data.users)  # input order kept across 2 actors
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the staging folder was renamed
    rows = {r["user_id"]: r for r in got.iter_rows(named=True)}

    # The runtime one user at a time (no batching) ...
    state = load_state(Registry(serving_data.registry), "recommend", [(serving_data.rec_a, 1.0)])
    users = list(serving_data.users)[:: max(1, len(serving_data.users) // 6)][:6]
    for user in users:
        req = {"history": serving_data.users[user][-100:], "k": 10, "exclude": [], "exclude_history": None,
               "categories": None, "fallback_reason": None}
        job, ctx = plan_recommend(state, req)
        answer = finish_recommend(state, ctx, None if job is None else run_jobs([(state, job)])[0])
        assert rows[user]["items"] == [i["item_id"] for i in answer["items"]], user
        assert rows[user]["scores"] == pytest.approx([i["score"] for i in answer["items"]], rel=1e-5, abs=1e-6)
    # ... and the live app, which looks the user up in its own users table.
    for user in users[:3]:
        r = full.post("/v1/recommend", {"user_id": user, "k": 10})
        assert r.status_code == 200, r.text
        assert r.json()["variant"] == "champion" and r.json()["versions"] == [serving_data.rec_a]
        assert rows[user]["items"] == [i["item_id"] for i in r.json()["items"]], user


def test_demand_and_risk_equal_live_serve(serving_data, full, tmp_path: Path) -> None:
    items = serving_data.items[:5] + ["never-sold"]
    pl.DataFrame({"item_id": items + items[:2]}).write_parquet(tmp_path / "items.parquet")  # repeats: scored once
    run_scoring(_spec(serving_data, tmp_path / "dem", task="demand", version=serving_data.dem_a, horizon=7,
                      loader=f"{STANDIN}:load_forecaster", inputs={"kind": "table", "uri": str(tmp_path / "items.parquet")}))
    got = _read(tmp_path / "dem")
    live = full.post("/v1/demand", {"item_ids": items, "horizon": 7}).json()
    assert got["item_id"].to_list() == items
    assert got["fallback"].to_list() == [f["fallback"] for f in live["forecasts"]] == [False] * 5 + [True]
    assert live["quantiles"] == [0.1, 0.5, 0.9]
    for n, name in enumerate(("p10", "p50", "p90")):
        assert got[name].to_list() == [f["values"][n] for f in live["forecasts"]]

    lines = tmp_path / "lines.csv"
    lines.write_text("order_id,user_id,ts,country,item_id,quantity,price\n"
                     f"o1,{next(iter(serving_data.users))},2024-03-01T10:00:00+00:00,UK,{items[0]},1,2.5\n"
                     f"o1,,2024-03-01T10:00:00+00:00,UK,{items[1]},9,\n"
                     f"o2,,2024-03-02T10:00:00+00:00,,{items[2]},4,1.0\n")
    run_scoring(_spec(serving_data, tmp_path / "risk", task="risk", version=serving_data.risk_a,
                      loader=f"{STANDIN}:load_risk_model", inputs={"kind": "table", "uri": str(lines)}))
    got = _read(tmp_path / "risk")
    src = pl.read_csv(lines)
    orders = [{"order_id": r["order_id"], "user_id": r["user_id"], "ts": r["ts"], "country": r["country"],
               "lines": [{"item_id": r["item_id"], "quantity": r["quantity"], "price": r["price"]}]}
              for r in src.iter_rows(named=True)]
    live = full.post("/v1/risk", {"orders": orders}).json()["results"]
    assert got["row"].to_list() == [0, 1, 2] and got["order_id"].to_list() == ["o1", "o1", "o2"]
    assert got["probability"].to_list() == pytest.approx([r["probability"] for r in live])
    assert got["flagged"].to_list() == [r["flagged"] for r in live] == [False, True, True]


def test_a_failed_run_leaves_no_output(serving_data, tmp_path: Path) -> None:
    lines = tmp_path / "lines.csv"
    rows = "".join(f"o{n},{serving_data.items[0]},{1 if n != 37 else 0}\n" for n in range(60))
    lines.write_text("order_id,item_id,quantity\n" + rows)
    spec = _spec(serving_data, tmp_path / "out", task="risk", version=serving_data.risk_a, batch_size=8,
                 loader=f"{STANDIN}:load_risk_model", inputs={"kind": "table", "uri": str(lines)}, actors=2)
    with pytest.raises(ScoreError, match=r"row 37: quantity: Input should be greater than or equal to 1 \(got 0\)"):
        run_scoring(spec.model_copy(update={"rows_per_file": 8}))  # earlier batches' parts were staged first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lines.csv"]


def test_cli_to_s3_from_the_training_data(serving_data, s3_prefix: str, tmp_path: Path) -> None:
    from ecomine import storage

    spec = tmp_path / "score.yaml"
    spec.write_text(f"task: recommend\nregistry: {serving_data.registry}\nversion: staging\n"
                    f"inputs: {{kind: training_data}}\noutput: {s3_prefix}/scores/nightly\nk: 3\nnum_cpus: 0.5\n")
    r = subprocess.run([sys.executable, "-m", "ecomine.cli.main", "score", str(spec)], capture_output=True, text=True,
                       timeout=180)  # joins the session's cluster (RAY_ADDRESS)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"recommend/{serving_data.rec_b}" in r.stdout
    listed = sorted(u.rsplit("/", 1)[-1] for u in storage.list_prefix(s3_prefix))
    assert listed == [SUCCESS_FILE, "part-00000.parquet"]  # the staging prefix is gone
    marker = storage.read_json(f"{s3_prefix}/scores/nightly/{SUCCESS_FILE}")
    got = storage.read_parquet(f"{s3_prefix}/scores/nightly/part-00000.parquet")
    assert marker["version"] == serving_data.rec_b and marker["rows"] == got.height == len(serving_data.users)
    assert got["items"].list.len().unique().to_list() == [3]
