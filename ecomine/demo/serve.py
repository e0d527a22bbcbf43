"""The demo's serving stage: deploy serve_configs/local.yaml's app on the demo registry and call every route.

Each task is also called once with ``explain: true`` and its explanation printed (why this
item, what drives this forecast, why this order is risky); the risk line's drivers go to a PNG.

Part of `ecomine demo` (`ecomine.demo.run` runs the stages in order); kept apart
because it is the one stage that talks to Ray Serve and the client SDK.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ecomine.serve.launch import SERVE_LOGGING

__all__ = ["serve_and_call", "plot_risk_drivers"]


def _local_serve_args() -> dict[str, Any]:
    """`args:` of serve_configs/local.yaml when the demo runs from a checkout (else AppArgs' defaults)."""
    import yaml

    path = Path(__file__).resolve().parents[2] / "serve_configs" / "local.yaml"
    if not path.exists():
        return {}
    return yaml.safe_load(path.read_text())["applications"][0]["args"]


def plot_risk_drivers(line: Any, out: Path, *, title: str) -> None:
    """A horizontal bar per feature and word of one explained order line (``LineExplanation``), in probability units."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [(f"{f.name} = {f.value:g}" if f.value is not None else f"{f.name} (unknown)", f.contribution)
            for f in line.features[:8]]
    bars += [(f"word '{t.token}'", t.contribution) for t in line.tokens[:5]]
    bars.sort(key=lambda b: abs(b[1]))
    fig, ax = plt.subplots(figsize=(7.5, 0.35 * len(bars) + 1.6))
    ax.barh([b[0] for b in bars], [b[1] for b in bars], color=["#c0392b" if b[1] > 0 else "#2e86c1" for b in bars])
    ax.axvline(0, color="0.3", lw=0.8)
    ax.set_xlabel(f"contribution to the return probability (baseline {line.baseline_probability:.3f} -> {line.probability:.3f})")
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _explain_each_task(c, sample: dict[str, Any], orders: list[dict[str, Any]], console, out: Path | None) -> dict[str, Any]:
    """One explained call per route, printed; the risk drivers' PNG when ``out`` is given."""
    titles, history = sample["titles"], sample["history"]
    found: dict[str, Any] = {}
    rec = c.recommend(history=history, k=3, explain=True)
    found["recommend"] = rec.model_dump(mode="json")
    top = rec.items[0]
    because = ", ".join(f"{titles.get(b.item_id, b.item_id)[:30]} (+{b.contribution:.4f})" for b in top.because or [])
    console.print(f"[bold]why[/] {titles.get(top.item_id, top.item_id)[:40]} (score {top.score:.4f}): "
                  f"because the customer bought {because or 'nothing that raised it'}")
    dem = c.demand(item_ids=sample["demand_items"][:1], horizon=sample["demand_horizon"], explain=True)
    found["demand"] = dem.model_dump(mode="json")
    f = dem.forecasts[0]
    drivers = ", ".join(f"{d.input} {d.effect:+.3g}" for d in (f.drivers or [])[:3])
    console.print(f"[bold]what drives[/] the p50 of {f.item_id} (units per period, vs a reference input): {drivers or '-'}")
    risk = c.risk(orders=orders[-1:], explain=True)
    found["risk"] = risk.model_dump(mode="json")
    result = risk.results[0]
    line = (result.lines or [None])[0]
    if line is not None:
        pushes = [(f.name, f.contribution) for f in line.features[:3]] + [(f"'{t.token}'", t.contribution) for t in line.tokens[:2]]
        pushes.sort(key=lambda p: -abs(p[1]))
        console.print(f"[bold]why risky[/] {result.order_id} (line p={line.probability:.3f}, reference "
                      f"{line.baseline_probability:.3f}): " + ", ".join(f"{n} {v:+.3f}" for n, v in pushes))
        if out is not None:
            plot_risk_drivers(line, out, title=f"why order {result.order_id} is risky: {line.item_id}")
            found["risk_drivers_png"] = str(out)
    return found


def _one_event_changes_it(c, history: list[str], titles: dict[str, str], console) -> dict[str, Any]:
    """A shopper the model never saw: popular items, then one POST /v1/events, then a personal ranking."""
    import uuid

    user = f"new-shopper-{uuid.uuid4().hex[:6]}"
    before = c.recommend(user_id=user, k=3)
    sent = c.events(events=[{"user_id": user, "item_id": history[-1], "event": "cart"}])
    after = c.recommend(user_id=user, k=3)
    console.print(f"[bold]live events[/]: a new shopper puts {titles.get(history[-1], history[-1])!r} in the cart "
                  f"(POST /v1/events: {sent.accepted} accepted); their next recommendation:")
    console.print(f"   before ({before.history_source}, popular): {[titles.get(i.item_id, i.item_id)[:30] for i in before.items]}")
    console.print(f"   after  ({after.history_source}): {[titles.get(i.item_id, i.item_id)[:30] for i in after.items]}")
    return {"before": {"fallback": before.fallback, "history_source": before.history_source,
                       "items": [i.item_id for i in before.items]},
            "accepted": sent.accepted,
            "after": {"fallback": after.fallback, "history_source": after.history_source,
                      "items": [i.item_id for i in after.items]}}


def serve_and_call(registry: Path, sample: dict[str, Any], console, *, challenger: str | None = None,
                   ray_is_ours: bool = False, risk_drivers_png: Path | None = None) -> dict[str, Any]:
    """Deploy serve_configs/local.yaml's app on the demo registry (the production version of each task; for
    recommend that is the demo's ensemble version), call every route through the SDK, then take it down.
    `challenger`: a recommend version served beside it in shadow. `ray_is_ours`: the demo started this
    Ray and shuts it down after, which takes Serve with it.

    ~90 lines: the demo's one scripted walk through every route, printing each answer as it comes."""
    from ray import serve

    from ecomine.client import EcomineClient
    from ecomine.cluster.session import free_port
    from ecomine.serve.app import build

    args = _local_serve_args()
    args["registry"] = str(registry)
    small = {"num_cpus": 0.1}  # fractional: the demo's Ray also ran Train and Tune on these cores
    rec = {**args.get("recommend", {}), "champion": {"version": "production"}}
    rec["resources"] = {**rec.get("resources", {}), **small}
    rec.pop("users_uri", None), rec.pop("catalogue_uri", None)
    if challenger is not None:
        rec["challenger"] = {"version": challenger}
        rec["traffic"] = {"mode": "shadow", "weight": 1.0}
    args["recommend"] = rec
    for task in ("demand", "risk"):
        args[task] = {"champion": {"version": "production"}, "resources": small}
    args["ingress"] = {**args.get("ingress", {}), "num_cpus": 0.1}
    # live events (local.yaml: an SQLite store and an event log, paths relative to `serve up`): beside the registry
    live_dir = registry.parent / "live"
    args["live"] = {**args.get("live", {}), "store": "sqlite", "path": str(live_dir / "history.sqlite"),
                    "log_uri": str(live_dir / "events")}
    # the demo shows the words of a risky line too (an encoder pass per request: off in local.yaml for its cost)
    args["limits"] = {**args.get("limits", {}), "max_explain_tokens": 8}
    port = free_port()
    from ray.serve.context import _get_global_client

    try:  # Serve already running on this cluster (its HTTP port is fixed when it first starts)
        http = _get_global_client(raise_if_no_controller_running=True).http_config
        started_here, prefix = False, "/ecomine-demo"
    except Exception:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        http = _get_global_client().http_config
        started_here, prefix = True, "/"
    serve.run(build(args), name="ecomine-demo", route_prefix=prefix, logging_config=SERVE_LOGGING)
    host = "127.0.0.1" if http.host in ("0.0.0.0", "::", None) else http.host
    answers: dict[str, Any] = {"url": f"http://{host}:{http.port}{prefix.rstrip('/')}", "sample_history": list(sample["history"])}
    titles, history, user = sample["titles"], sample["history"], sample["user"]
    try:
        with EcomineClient(base_url=answers["url"], timeout=60) as c:
            answers["health"] = c.health().model_dump(mode="json")
            answers["models"] = c.models().model_dump(mode="json")
            rec = c.recommend(history=history, k=5)
            answers["recommend"] = rec.model_dump(mode="json")
            console.print(f"[bold]recommend[/] for a customer who bought {[titles.get(i, i) for i in history[-3:]]}:")
            for it in rec.items:
                console.print(f"   {it.score:.3f}  {it.item_id}  {titles.get(it.item_id, '')}")
            cold = c.recommend(user_id="nobody-we-know", k=3)
            answers["recommend_unknown_user"] = {"fallback": cold.fallback, "items": [i.item_id for i in cold.items]}
            answers["live_events"] = _one_event_changes_it(c, history, titles, console)

            items = [*sample["demand_items"], "NO-SUCH-ITEM"]
            dem = c.demand(item_ids=items, horizon=sample["demand_horizon"], quantiles=[0.1, 0.5, 0.9])
            answers["demand"] = dem.model_dump(mode="json")
            console.print(f"[bold]demand[/] next {dem.horizon} periods ({dem.freq}), p10 / p50 / p90 units in all:")
            for f in dem.forecasts:
                p10, p50, p90 = (sum(row) for row in f.values)
                flag = "  [yellow]fallback profile[/]" if f.fallback else ""
                console.print(f"   {f.item_id:>14}  {p10:8.1f} {p50:8.1f} {p90:8.1f}  {titles.get(f.item_id, '')[:40]}{flag}")

            orders = [
                {"order_id": "known-customer", "user_id": user, "country": sample.get("country"),
                 "lines": [{"item_id": i, "quantity": 2, "price": sample["prices"].get(i)} for i in history[-2:]]},
                {"order_id": "bulk-new-customer", "user_id": "first-time-buyer", "country": sample.get("risky_country"),
                 "lines": [{"item_id": history[-1], "quantity": 48, "price": sample["prices"].get(history[-1])}]},
            ]
            risk = c.risk(orders=orders)
            answers["risk"] = risk.model_dump(mode="json")
            console.print("[bold]risk[/] (probability that a line of the order is returned):")
            for r in risk.results:
                console.print(f"   {r.order_id:>18}  p={r.probability:.3f}  flagged={r.flagged} (threshold {r.threshold:.3f})")
            answers["insights"] = c.insights(history=history, k=5).model_dump(mode="json")
            answers["explained"] = _explain_each_task(c, sample, orders, console, risk_drivers_png)
    finally:
        if started_here and not ray_is_ours:
            serve.shutdown()
        else:
            # On the demo's own Ray, ray.shutdown() stops Serve: serve.shutdown() here would have the
            # controller killed inside its own graceful_shutdown call, which the raylet reports as a
            # "(raylet) Task ServeController.graceful_shutdown failed" line after the demo's summary.
            serve.delete("ecomine-demo")
    return answers
