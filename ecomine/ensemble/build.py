"""`ecomine ensemble build`: registered versions -> a combination fitted on validation -> a version of kind ensemble.

An orchestrator on top of the flow (it calls train's tasks, the registry and
`models.ensemble`; nothing below calls it). Steps: resolve the members (by
version, stage, tag or campaign) -> check they are one task trained on one
data set and one catalogue -> prepare that data once -> each member's
validation outputs -> fit weights (and temperatures, recalibration) -> the
test report: the ensemble beside every member and the task's baselines ->
register `ensemble.json` pinning every member by version and content digest.
Any refusal happens before anything is registered.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ecomine.registry import (
    EnsembleManifest,
    PinnedMember,
    Registry,
    RegistryError,
    content_digest,
    is_ensemble,
    write_ensemble,
)
from ecomine.specs import EnsembleSpec, SpecError, TrainSpec, metric_mode

__all__ = ["EnsembleOutcome", "resolve_members", "resolve_member_groups", "build_ensemble", "campaign_ensemble", "versus_best_member", "RecommendMixture"]


@dataclass
class EnsembleOutcome:
    version: str
    members: list[dict[str, Any]]
    results: dict[str, Any]
    report: Any  # a rich Table


def resolve_members(registry, spec: EnsembleSpec) -> list:
    """The spec's member references -> distinct registered versions (errors name `members[i]`)."""
    return resolve_member_groups(registry, spec)[0]


def resolve_member_groups(registry, spec: EnsembleSpec) -> tuple[list, list[str]]:
    """``resolve_members`` and each member's group: its reference's ``group``, else one of its own."""
    chosen, groups, seen = [], [], set()
    for i, ref in enumerate(spec.members):
        field = f"members[{i}]"
        if ref.version is not None:
            try:
                found = [registry.get(spec.task, ref.version)]
            except RegistryError as exc:
                raise SpecError(f"{field}.version: {exc}") from None
        else:
            tag = ref.tag or ref.campaign
            key = "tag" if ref.tag else "campaign"
            tagged = [mv for mv in registry.list(spec.task) if tag in mv.tags and not is_ensemble(mv)]
            if not tagged:
                raise SpecError(f"{field}.{key}: no {spec.task} version is tagged {tag!r}")
            found = sorted(tagged, key=lambda mv: _validation_rank(mv))[: ref.top]
        for mv in found:
            if is_ensemble(mv):
                raise SpecError(f"{field}: {spec.task}/{mv.version} is itself an ensemble; name its members instead")
            if mv.version not in seen:
                seen.add(mv.version)
                chosen.append(mv)
                groups.append(ref.group if ref.group is not None else f"#{mv.version}")
    if len(chosen) < 2:
        raise SpecError(f"members: resolve to {len(chosen)} distinct version(s); an ensemble needs at least 2")
    if spec.task != "demand" and len(set(groups)) < len(groups):
        raise SpecError(f"members[].group: groups are a demand mixture's (seeds of one forecaster); {spec.task} "
                        "ensembles weigh every member")
    return chosen, groups


# The primary test metric of each task's report: (path inside a report row, larger is better)
_PRIMARY = {
    "recommend": [(("all_items", "NDCG@10"), True), (("new_items", "NDCG@10"), True)],
    "demand": [(("pinball",), False)],
    "risk": [(("pr_auc",), True)],
}


def versus_best_member(task: str, results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per primary metric: the ensemble, its best member, and their ratio (>1 is better for max-metrics)."""
    out = []
    for path, larger in _PRIMARY[task]:
        def get(row):
            for key in path:
                row = row.get(key) if isinstance(row, dict) else None
            return float(row) if row is not None else float("nan")

        members = {k: get(v) for k, v in results.items() if k.startswith("member ")}
        best_name = (max if larger else min)(members, key=lambda k: members[k])
        ens = get(results["ensemble"])
        out.append({"metric": "/".join(path), "ensemble": ens, "best_member": best_name, "member": members[best_name],
                    "ratio": ens / members[best_name] if members[best_name] else float("nan"),
                    "better": "higher" if larger else "lower"})
    return out


def _validation_rank(mv) -> float:
    """Sort key, best first, from the metric each version early-stopped on."""
    value = mv.metrics.get("best_validation")
    metric = mv.metrics.get("validation_metric") or "loss"
    if value is None or not np.isfinite(value):
        return float("inf")
    return -float(value) if metric_mode(metric) == "max" else float(value)


def _member_spec(mv, i: int) -> TrainSpec:
    try:
        return TrainSpec.model_validate(mv.spec)
    except Exception as exc:
        raise SpecError(f"members[{i}]: {mv.task}/{mv.version} carries no TrainSpec this version can read: {exc}") from None


class RecommendMixture:
    """Scorer of a recommend ensemble: log of the weighted mean of members' softmax(temperature * scores)."""

    def __init__(self, models: list, weights: np.ndarray, temperatures: list[float]) -> None:
        self.models, self.weights, self.temperatures = models, weights, temperatures

    def eval(self) -> RecommendMixture:
        return self

    def score(self, histories: list[np.ndarray], device: str = "cpu") -> np.ndarray:
        from ecomine.predict.combine import mix, softmax_rows

        probs = [softmax_rows(m.score(histories), t) for m, t in zip(self.models, self.temperatures)]
        with np.errstate(divide="ignore"):
            return np.log(mix(probs, self.weights))


def _fit_recommend(spec: EnsembleSpec, models: list, data) -> tuple[np.ndarray, list[float], dict[str, Any]]:
    from ecomine.predict.combine import fit_mixture_weights, fit_temperature, target_probabilities

    rng = np.random.default_rng(spec.fit.seed)
    n = len(data.valid_targets)
    rows = np.sort(rng.choice(n, min(n, spec.fit.max_rows), replace=False))
    histories = [data.valid_histories[r] for r in rows]
    targets = np.asarray(data.valid_targets)[rows]
    temps, p = [], []
    for m in models:
        logits = np.concatenate([m.score(histories[s : s + 512]) for s in range(0, len(histories), 512)])
        t = fit_temperature(logits, targets) if spec.fit.method == "likelihood" else 1.0
        temps.append(t)
        p.append(target_probabilities(logits, targets, t))
        del logits
    p_mat = np.stack(p, 1)
    if spec.fit.method == "uniform":
        weights = np.full(len(models), 1.0 / len(models))
        ll = float(np.mean(np.log(np.maximum(p_mat @ weights, 1e-300))))
    else:
        fit = fit_mixture_weights(p_mat)
        weights, ll = fit.weights, fit.log_likelihood
    info = {"rows": int(len(rows)), "log_likelihood": ll,
            "member_log_likelihood": [float(np.mean(np.log(np.maximum(c, 1e-300)))) for c in p_mat.T]}
    return weights, temps, info


def _recommend_report(train_spec: TrainSpec, members, models, data, weights, temps):
    from ecomine.train.recommend_eval import MODEL_NAME, evaluate_recommender
    from ecomine.train.recommend_metrics import evaluate_scorer

    ks = train_spec.eval.ks
    mixture = RecommendMixture(models, weights, temps)
    results = evaluate_recommender(mixture, data, ks=ks, split="test")
    ordered = {"ensemble": results.pop(MODEL_NAME)}
    n = data.n_items + 1
    for mv, model, w in zip(members, models, weights):
        ordered[f"member {mv.version} (w {w:.2f})"] = evaluate_scorer(
            model, data.test_histories, data.test_targets, n_items=n, ks=ks, pad_id=0
        )
    ordered.update(results)
    return ordered


def _group_means(forecasts: list[np.ndarray], groups: list[str]) -> list[np.ndarray]:
    """One forecast per group (in first-seen order): its members' equal-weight mean."""
    order = list(dict.fromkeys(groups))
    return [np.mean([f for f, g in zip(forecasts, groups) if g == name], axis=0) for name in order]


def _member_weights(group_weights: np.ndarray, groups: list[str]) -> np.ndarray:
    """A group's fitted weight split equally among its members."""
    order = list(dict.fromkeys(groups))
    return np.array([group_weights[order.index(g)] / groups.count(g) for g in groups])


def _fit_demand(spec: EnsembleSpec, members, models, specs, data,
                groups: list[str] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """Quantile weights minimising validation pinball (scaled per item, as the report scores it); members of one
    group (seeds of one forecaster) are averaged first and share their group's weight."""
    from ecomine.predict.combine import combine_quantiles, fit_quantile_weights, fit_shrunk_quantile_weights
    from ecomine.train.demand_eval import MODEL_NAMES, forecast_metrics
    from ecomine.train.demand_task import TASK, UNCALIBRATED, _actuals, _model_forecasts

    first = specs[0].model
    for i, s in enumerate(specs[1:], 1):
        for field in ("freq", "horizon", "quantiles", "context_length"):
            if getattr(s.model, field) != getattr(first, field):
                raise SpecError(f"members[{i}]: model.{field} {getattr(s.model, field)!r} differs from the first "
                                f"member's {getattr(first, field)!r}; demand members must forecast alike")
    qs, H = list(first.quantiles), first.horizon
    scale = np.asarray(data.scale, np.float64)[:, None, None]

    def forecasts(origins):
        return [_model_forecasts(m, data, origins, s, data.profiles_eval) for m, s in zip(models, specs)]

    groups = groups or [f"#{mv.version}" for mv in members]
    val = forecasts(data.valid_origins)
    val_groups = _group_means(val, groups)
    y_val = _actuals(data, data.valid_origins, H)
    fit_info: dict[str, Any] = {}
    if spec.fit.method == "uniform":
        weights = np.full(len(val_groups), 1.0 / len(val_groups))
    else:
        # one fold per validation origin: [M, N*H, Q] forecasts and [N*H] actuals, scaled per item as
        # the report scores them; max_rows spread over the folds (seeded)
        rng = np.random.default_rng(spec.fit.seed)
        per_fold = max(1, spec.fit.max_rows // len(data.valid_origins))
        folds = []
        for k in range(len(data.valid_origins)):
            preds = np.stack([(f[:, k] / scale).reshape(-1, len(qs)) for f in val_groups])  # [N, H, Q] / [N, 1, 1]
            y = (y_val[:, k] / scale[:, :, 0]).reshape(-1)
            rows = rng.choice(len(y), min(len(y), per_fold), replace=False)
            folds.append((preds[:, rows], y[rows]))
        if spec.fit.shrink == "cv":
            shrunk = fit_shrunk_quantile_weights(folds, qs)
            weights = shrunk.weights
            fit_info.update(fitted_weights=shrunk.fitted.tolist(), shrink=shrunk.shrink,
                            held_out_weights=shrunk.held_out_weights, cv_pinball=shrunk.cv_pinball)
        else:
            weights = fit_quantile_weights(np.concatenate([p for p, _ in folds], axis=1),
                                           np.concatenate([y for _, y in folds]), qs)
    if len(val_groups) < len(val):
        fit_info["group_weights"] = [float(w) for w in weights]
        weights = _member_weights(weights, groups)
    val_mix = combine_quantiles(val, weights, axis=-1)
    fit_info.update(validation_pinball=forecast_metrics(y_val, val_mix, qs, data.scale)["pinball"],
                    member_validation_pinball=[forecast_metrics(y_val, f, qs, data.scale)["pinball"] for f in val])
    test = forecasts(data.test_origins)
    y_test = _actuals(data, data.test_origins, H)
    baselines = TASK.evaluate(models[0], data, specs[0])
    results = {"ensemble": forecast_metrics(y_test, combine_quantiles(test, weights, axis=-1), qs, data.scale)}
    for mv, f, w in zip(members, test, weights):
        results[f"member {mv.version} (w {w:.2f})"] = forecast_metrics(y_test, f, qs, data.scale)
    results.update({k: v for k, v in baselines.items() if k.removesuffix(UNCALIBRATED) not in MODEL_NAMES.values()})
    pins = [{"weight": float(w), "temperature": 1.0} for w in weights]
    return pins, results, {"fit": fit_info}


def _fit_risk(spec: EnsembleSpec, members, models, specs, data,
              groups: list[str] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """Mixture of the members' calibrated probabilities (EM on the validation likelihood), then one Platt recalibration."""
    from ecomine.predict.combine import apply_platt, fit_mixture_weights, fit_platt, mix
    from ecomine.train.risk_eval import MODEL_NAME, binary_metrics, choose_threshold, decision_report
    from ecomine.train.risk_task import TASK, predict_logits, reads_same_split

    for i, s in enumerate(specs[1:], 1):
        if not reads_same_split(s, specs[0]):
            field = next((f"model.{f}" for f in ("horizon_days", "label", "split")
                          if getattr(s.model, f) != getattr(specs[0].model, f)), "data")
            raise SpecError(f"members[{i}]: {field} differs from the first member's; risk members must be "
                            "scored on one validation and test split")
    # each member reads its own inputs of the same lines: text vectors of its own encoder, or
    # none for LightGBM (data prepared for the first member is reused wherever it serves)
    views = [TASK.adapt(data, s) for s in specs]

    def probs(split: str) -> list[np.ndarray]:
        out = []
        for m, s, d in zip(models, specs, views):
            cal, _ = TASK.calibrate(m, d, s)
            out.append(np.clip(cal(predict_logits(m, d, getattr(d, split))), 1e-7, 1 - 1e-7))
        return out

    y_val, y_test = data.valid.labels.astype(bool), data.test.labels
    val = probs("valid")
    if spec.fit.method == "uniform":
        weights = np.full(len(models), 1.0 / len(models))
    else:
        weights = fit_mixture_weights(np.stack([np.where(y_val, p, 1 - p) for p in val], 1)).weights
    a, b = fit_platt(mix(val, weights), y_val)
    val_mix = apply_platt(mix(val, weights), a, b)
    t = specs[0].model.threshold
    thr = choose_threshold(y_val, val_mix, target_precision=t.target_precision, cost_ratio=t.cost_ratio)
    test = probs("test")
    p_test = apply_platt(mix(test, weights), a, b)
    baselines = TASK.evaluate(models[0], data, specs[0])
    results = {"ensemble": {**binary_metrics(y_test, p_test), "threshold_rule": thr,
                            "decision": decision_report(y_test, p_test, thr["threshold"])}}
    for mv, p, w in zip(members, test, weights):
        results[f"member {mv.version} (w {w:.2f})"] = binary_metrics(y_test, p)
    results.update({k: v for k, v in baselines.items() if k != MODEL_NAME})
    fit_info = {"validation_pr_auc": binary_metrics(y_val, val_mix)["pr_auc"],
                "member_validation_pr_auc": [binary_metrics(y_val, p)["pr_auc"] for p in val]}
    pins = [{"weight": float(w), "temperature": 1.0} for w in weights]
    return pins, results, {"fit": fit_info, "recalibration": (a, b), "threshold": float(thr["threshold"])}


def _fit_recommend_task(spec: EnsembleSpec, members, models, specs, data, groups: list[str] | None = None):
    weights, temps, fit_info = _fit_recommend(spec, models, data.data)
    results = _recommend_report(specs[0], members, models, data.data, weights, temps)
    pins = [{"weight": float(w), "temperature": float(t)} for w, t in zip(weights, temps)]
    return pins, results, {"fit": fit_info}


_FITTERS = {"recommend": _fit_recommend_task, "demand": _fit_demand, "risk": _fit_risk}


def _format(task_name: str, results: dict[str, Any], title: str):
    from ecomine.train.tasks import get_task

    return get_task(task_name).format_report(results, title=title)


def build_ensemble(spec: EnsembleSpec, *, console=None, source: str = "ensemble spec", data=None) -> EnsembleOutcome:
    """Resolve, check, fit, evaluate and register; see the module docstring.

    `data` may pass the task's data prepared for one of the members (a driver that just
    trained them holds it: the risk text vectors cost minutes); it is adapted to the first
    member's spec and still has to carry every member's data fingerprint.
    """
    from ecomine.train.reports import report_json
    from ecomine.train.tasks import get_task

    registry = Registry(spec.registry)
    members, groups = resolve_member_groups(registry, spec)
    specs = [_member_spec(mv, i) for i, mv in enumerate(members)]
    for i, s in enumerate(specs):
        if s.task != spec.task:
            raise SpecError(f"members[{i}]: {members[i].version} was trained for task {s.task!r}, not {spec.task!r}")
    task = get_task(spec.task)
    if console is not None:
        console.print(f"ensemble of {len(members)} {spec.task} versions: " + ", ".join(mv.version for mv in members))
    data = task.prepare(specs[0]) if data is None else task.adapt(data, specs[0])
    fingerprint = task.fingerprint(data)
    for i, mv in enumerate(members):
        if mv.data_fingerprint != fingerprint:
            raise SpecError(
                f"members[{i}]: {spec.task}/{mv.version} was trained on other data (fingerprint "
                f"{mv.data_fingerprint[:12]} vs the first member's {fingerprint[:12]}); members must share one data set"
            )
    models = []
    for i, (mv, s) in enumerate(zip(members, specs)):
        folder = registry.fetch(spec.task, mv.version)
        try:
            models.append(task.load(folder, s, data).eval())
        except ValueError as exc:
            raise SpecError(f"members[{i}]: {spec.task}/{mv.version}: {exc}") from None
    fits, results, extra = _FITTERS[spec.task](spec, members, models, specs, data, groups)
    pinned = [PinnedMember(version=mv.version, digest=content_digest(mv), **f) for mv, f in zip(members, fits)]
    ensemble = EnsembleManifest(task=spec.task, method=spec.fit.method, members=pinned,
                                recalibration=extra.get("recalibration"), threshold=extra.get("threshold"))
    # "test": the ensemble's own row, as every version's headline (registry list); "report": the whole table
    metrics = {"test": report_json({"e": results["ensemble"]})["e"], "report": report_json(results), "fit": extra["fit"],
               "validation_metric": specs[0].watch()[0]}
    with tempfile.TemporaryDirectory(prefix="ecomine-ensemble-") as tmp:
        write_ensemble(tmp, ensemble)
        mv = registry.register(
            spec.task, Path(tmp), spec=spec.model_dump(mode="json"), data_fingerprint=fingerprint, metrics=metrics,
            tags=["ensemble", *spec.tags], notes="members: " + ", ".join(m.version for m in pinned),
        )
    if spec.promote is not None:
        registry.promote(spec.task, mv.version, spec.promote)
    table = _format(spec.task, results, title=f"ensemble {spec.task}/{mv.version} (test split)")
    return EnsembleOutcome(version=mv.version, members=[p.model_dump() for p in pinned], results=results, report=table)


def campaign_ensemble(campaign, versions: list[str], *, console=None) -> EnsembleOutcome:
    """A campaign's `ensemble:` block: its exported versions (best first) built into one ensemble version."""
    block = campaign.spec.ensemble
    chosen = versions[: block.top_k or len(versions)]
    spec = EnsembleSpec(
        task=campaign.base.task, registry=campaign.base.run.registry, members=[{"version": v} for v in chosen],
        fit=block.fit, tags=[campaign.spec.name], promote=block.promote,
    )
    return build_ensemble(spec, console=console, source=f"campaign {campaign.spec.name} ensemble")
