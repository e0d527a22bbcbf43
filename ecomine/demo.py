"""`ecomine demo`: the whole platform on the embedded synthetic log, end to end.

The outermost consumer of the flow: synthesise a log -> clean and profile it ->
train the recommender through Ray Train -> evaluate beside baselines ->
register -> run a tiny Ray Tune campaign -> serve the production version and
the campaign's ensemble with Ray Serve -> call every route through the client
SDK -> write a summary JSON and PNG plots -> shut Serve down.
`DemoSize` fixes the numbers; tests run the same code path with `DemoSize.tiny()`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DemoSize", "run_demo"]


@dataclass
class DemoSize:
    users: int = 800
    items: int = 200
    days: int = 300
    epochs: int = 6
    tune_samples: int = 3
    tune_epochs: int = 2
    workers: int = 1
    seed: int = 0

    @classmethod
    def tiny(cls) -> DemoSize:
        return cls(users=150, items=50, days=90, epochs=2, tune_samples=2, tune_epochs=1)


@dataclass
class _Stage:
    name: str
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)


def _plot_history(history: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.plot(epochs, [h["train_loss"] for h in history], marker="o")
    a.set_xlabel("epoch")
    a.set_ylabel("train loss (full-softmax CE)")
    b.plot(epochs, [h.get("val_ndcg@10") for h in history], marker="o", label="all items")
    b.plot(epochs, [h.get("val_new_ndcg@10") for h in history], marker="o", label="new items")
    b.set_xlabel("epoch")
    b.set_ylabel("validation NDCG@10")
    b.legend()
    fig.suptitle("recommender training")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_and_call(out: Path, registry: Path, version: str, ensemble: list[str], log, console) -> dict[str, Any]:
    """Deploy the recommend app (champion = production, challenger = the campaign's ensemble in
    shadow), call every route through the SDK, then shut Serve down."""
    from ray import serve

    from ecomine.client import EcomineClient, UnavailableError
    from ecomine.serve.app import build

    port = _free_port()
    arms: dict[str, Any] = {"champion": {"version": "production"}}
    if len(ensemble) >= 2:
        arms["challenger"] = {"members": [{"version": v} for v in ensemble]}
        arms["traffic"] = {"mode": "shadow", "weight": 1.0}
    args = {
        "registry": str(registry),
        "recommend": {**arms, "resources": {"num_cpus": 0.1}, "batching": {"max_batch_size": 8}},
        "ingress": {"num_cpus": 0.1},
    }
    from ray.serve.context import _get_global_client

    try:  # Serve already running on this cluster (its HTTP port is fixed when it first starts)
        http = _get_global_client(raise_if_no_controller_running=True).http_config
        started_here, prefix = False, "/ecomine-demo"
    except Exception:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        http = _get_global_client().http_config
        started_here, prefix = True, "/"
    serve.run(build(args), name="ecomine-demo", route_prefix=prefix)
    host = "127.0.0.1" if http.host in ("0.0.0.0", "::", None) else http.host
    answers: dict[str, Any] = {"url": f"http://{host}:{http.port}{prefix.rstrip('/')}"}
    try:
        events = log.events.filter(log.events["event"] == "purchase")
        user = events["user_id"][0]
        history = events.filter(events["user_id"] == user)["item_id"].to_list()[-10:]
        titles = dict(zip(log.items["item_id"].to_list(), log.items["title"].to_list()))
        with EcomineClient(base_url=answers["url"], timeout=30) as c:
            answers["health"] = c.health().model_dump(mode="json")
            answers["models"] = c.models().model_dump(mode="json")
            rec = c.recommend(history=history, k=5)
            answers["recommend"] = rec.model_dump(mode="json")
            console.print(f"[bold]recommend[/] for a customer who bought {[titles.get(i, i) for i in history[-3:]]}:")
            for it in rec.items:
                console.print(f"   {it.score:.3f}  {it.item_id}  {titles.get(it.item_id, '')}")
            cold = c.recommend(user_id="nobody-we-know", k=3)
            answers["recommend_unknown_user"] = {"fallback": cold.fallback, "items": [i.item_id for i in cold.items]}
            answers["insights"] = c.insights(history=history, k=5).model_dump(mode="json")
            for route, call in (("demand", lambda: c.demand(item_ids=history[:2], horizon=7)),
                                ("risk", lambda: c.risk(orders=[{"order_id": "o1", "user_id": user,
                                                                 "lines": [{"item_id": history[0], "quantity": 2, "price": 3.5}]}]))):
                try:
                    answers[route] = call().model_dump(mode="json")
                except UnavailableError as e:  # no demand/risk model in this build: a 503 naming it
                    answers[route] = {"status": e.status, "message": e.message}
                    console.print(f"   /v1/{route}: {e.status} {e.message}")
    finally:
        if started_here:
            serve.shutdown()
        else:
            serve.delete("ecomine-demo")
    return answers


def run_demo(out_dir: str | Path = "demo_out", *, size: DemoSize | None = None, console=None) -> dict[str, Any]:
    """Run every stage, print progress, return (and write) the summary."""
    import ray
    import yaml
    from rich.console import Console

    from ecomine.data.cleaning import clean_frame
    from ecomine.datasets.synthetic import SynthParams, describe, generate, write
    from ecomine.registry import Registry
    from ecomine.specs import TrainSpec
    from ecomine.train.evaluate import MODEL_NAME, best_baseline
    from ecomine.train.metrics import format_report, report_json
    from ecomine.train.runner import run_training
    from ecomine.tuning import run_campaign

    size = size or DemoSize()
    console = console or Console()
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    registry = out / "registry"
    stages: list[_Stage] = []
    t_all = time.perf_counter()

    def stage(name: str):
        console.rule(f"[bold]{name}")
        return time.perf_counter()

    t = stage("1/6 synthetic event log")
    log = generate(SynthParams(users=size.users, items=size.items, days=size.days, seed=size.seed))
    write(log, str(out / "data"))
    facts = describe(log)
    console.print({k: v for k, v in facts.items() if not isinstance(v, dict)})
    stages.append(_Stage("synthetic log", time.perf_counter() - t, {k: v for k, v in facts.items() if not isinstance(v, dict)}))

    t = stage("2/6 clean and profile")
    _, report = clean_frame(log.events, name="synthetic")
    console.print(f"rows {report.rows_read:,} -> kept {report.rows_out:,}; dropped {report.dropped}; changed {report.changed}")
    stages.append(_Stage("clean", time.perf_counter() - t, {"rows_out": report.rows_out, "dropped": report.dropped}))

    if not ray.is_initialized():
        console.print("starting a local Ray ...")
        from ecomine.train.runner import ray_address

        address = ray_address(None)
        # Logical CPUs for what the demo schedules at once (Train workers + a Tune trial's
        # driver + Serve replicas); with exactly 2 a campaign was seen to stall on this box.
        cpus = {"num_cpus": max(4, size.workers + 3)} if address == "local" else {}
        ray.init(address=address, log_to_driver=False, configure_logging=False, **cpus)
    data_ref = {"kind": "synthetic", "users": size.users, "items": size.items, "days": size.days, "seed": size.seed}
    t = stage("3/6 train the recommender (Ray Train)")
    spec = TrainSpec.model_validate({
        "data": data_ref,
        "model": {"preset": "recommend_small"},
        "optim": {"epochs": size.epochs, "batch_size": 64, "lr": 3e-3, "early_stopping": {"patience": 2}},
        "scaling": {"num_workers": size.workers, "cpus_per_worker": 1},
        "run": {"name": "demo-recommend", "storage": str(out / "runs"), "registry": str(registry), "tags": ["demo"]},
        "eval": {"ks": [5, 10, 20]},
    })
    outcome = run_training(spec, console=console)
    console.print(format_report(outcome.results, title="recommend: test split (full catalogue)"))
    Registry(str(registry)).promote("recommend", outcome.version, "production")
    ratios = {}
    for protocol in ("all_items", "new_items"):
        name, value = best_baseline(outcome.results, protocol)
        model = outcome.results[MODEL_NAME][protocol]["NDCG@10"]
        ratios[protocol] = {"model": model, "best_baseline": name, "baseline": value, "ratio": model / value if value else None}
    _plot_history(outcome.history, out / "training_curve.png")
    stages.append(_Stage("train", time.perf_counter() - t, {"version": outcome.version, "ratios": ratios}))

    t = stage("4/6 tuning campaign (Ray Tune, ASHA)")
    base = out / "tune" / "base.yaml"
    base.parent.mkdir(parents=True, exist_ok=True)
    base.write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    campaign = out / "tune" / "demo.yaml"
    campaign.write_text(yaml.safe_dump({
        "kind": "tune", "name": "demo-campaign", "base": "base.yaml",
        "overrides": {"optim.epochs": size.tune_epochs, "optim.early_stopping": None, "run.tags": ["demo"]},
        "space": {"optim.lr": "loguniform 1e-3 1e-2", "model.backbone.hidden": "choice [32, 64]"},
        "num_samples": size.tune_samples, "max_concurrent": 1, "storage": str(out / "tune_runs"), "export_top_k": 2,
        "seed": size.seed,
    }, sort_keys=False))
    camp = run_campaign(campaign, console=console)
    stages.append(_Stage("tune", time.perf_counter() - t, {"trials": camp.trials, "versions": camp.versions, "best": camp.best}))

    t = stage("5/6 registry")
    versions = Registry(str(registry)).list("recommend")
    for v in versions:
        console.print(f"  {v.version}  stages={v.stages or '-'}  tags={v.tags}")
    stages.append(_Stage("registry", time.perf_counter() - t, {"versions": [v.version for v in versions]}))

    t = stage("6/6 serve (Ray Serve) and call every route (client SDK)")
    answers = _serve_and_call(out, registry, outcome.version, camp.versions, log, console)
    stages.append(_Stage("serve", time.perf_counter() - t, answers))

    summary = {
        "seconds": round(time.perf_counter() - t_all, 1),
        "size": asdict(size),
        "stages": [asdict(s) for s in stages],
        "recommend_report": report_json(outcome.results),
        "plots": {"training_curve": str(out / "training_curve.png"), "campaign": str(camp.plot_png)},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    console.rule("[bold green]done")
    console.print(f"summary: {out / 'summary.json'}; plots: {out / 'training_curve.png'}, {camp.plot_png}; "
                  f"{summary['seconds']:.0f}s in all")
    return summary
