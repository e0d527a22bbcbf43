"""The risk task: order lines -> return probability, through the shared Ray Train path.

Implements `ecomine.train.tasks.Task` for `task: risk`. `prepare` (driver) builds
`features.risk_examples`, cuts the temporal holdout (train / validation / test by
purchase day, labels closed before use), scales the numeric features, serialises
each line to text and, in frozen mode, runs the encoder ONCE over the unique texts
(the epochs then train the head on cached vectors: what makes a 500k-line log
affordable on two cores). After training, `evaluate` fits the calibrator and the
decision threshold on the validation split and reports the test split beside
logistic regression and LightGBM on the same features; `save` writes them with the
model (`ecomine.models.risk`).

`model.classifier: lightgbm` swaps the encoder for a booster over the same raw features
(`ecomine.models.risk_lightgbm`), fitted on the driver by `fit_lightgbm_classifier`
(`train.runner.run_lightgbm`): prepare then skips the text, and `predict_logits`,
calibration, evaluation and save dispatch on the model, so both kinds go through one
report and one version format family (what `ecomine ensemble build` mixes).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ecomine.train.risk_data import (
    RiskData,
    RiskSplitArrays,
    model_config,
    prepare_risk_data,
    prepared_for,
    reads_same_split,
    resample,
    split_windows,
)

__all__ = [
    "RiskSplitArrays", "RiskData", "RiskTask", "TASK", "split_windows", "prepare_risk_data", "predict_logits",
    "fit_lightgbm_classifier", "reads_same_split",
]


def _inputs(data: RiskData, split: RiskSplitArrays, rows: np.ndarray, device, numeric: bool) -> dict[str, Any]:
    import torch

    t = split.text_idx[rows]
    out: dict[str, Any] = {}
    if numeric:
        out["numeric"] = torch.from_numpy(split.numeric[rows]).to(device)
    if data.embeddings is not None:
        out["embeddings"] = torch.from_numpy(data.embeddings[t]).to(device)
    else:
        mask = data.attention_mask[t]
        width = max(1, int(mask.sum(1).max()))  # trim the padding this batch does not need
        out["input_ids"] = torch.from_numpy(data.input_ids[t, :width]).to(device)
        out["attention_mask"] = torch.from_numpy(mask[:, :width]).to(device)
    return out


def predict_logits(model, data: RiskData, split: RiskSplitArrays, device=None, batch_size: int | None = None) -> np.ndarray:
    """Corrected logits (head logit + logit_offset) of every line of `split`; a LightGBM booster reads `split.raw`."""
    import torch

    from ecomine.models.risk_lightgbm import RiskBooster

    if isinstance(model, RiskBooster):
        return model.logits(split.raw)
    device = device or torch.device("cpu")
    batch_size = batch_size or (4096 if data.embeddings is not None else 64)
    numeric = model.config.n_numeric > 0
    out = []
    was = model.training
    model.eval()
    with torch.inference_mode():
        for s in range(0, len(split), batch_size):
            rows = np.arange(s, min(s + batch_size, len(split)))
            out.append(model.logits(**_inputs(data, split, rows, device, numeric)).float().cpu().numpy())
    model.train(was)
    return (np.concatenate(out) if out else np.zeros(0)).astype(np.float64) + model.config.logit_offset


class RiskTask:
    name = "risk"

    def prepare(self, spec) -> RiskData:
        return prepare_risk_data(spec)

    def adapt(self, data: RiskData, spec) -> RiskData:
        # a campaign (or an ensemble build) prepares once: sampling / pos_weight / head settings
        # re-cut cheaply, anything the arrays or text vectors depend on means preparing again;
        # a LightGBM spec reads any prepared text or none
        need = prepared_for(spec)
        if any(data.prepared_for.get(k) != v for k, v in need.items()):
            return prepare_risk_data(spec)
        return resample(data, spec)

    def driver_init(self, spec, data: RiskData):
        return None  # the text vectors are computed in prepare (evaluation on the driver needs them too)

    def build_model(self, spec, data: RiskData, init):
        from ecomine.models.risk import RiskNet

        return RiskNet(model_config(spec, data))

    def num_examples(self, data: RiskData) -> int:
        return len(data.train_index)

    def batch(self, data: RiskData, index: np.ndarray, device) -> dict[str, Any]:
        import torch

        rows = data.train_index[index]
        out = _inputs(data, data.train, rows, device, data.use_numeric)
        out["labels"] = torch.from_numpy(data.train.labels[rows]).to(device)
        return out

    def validate(self, model, data: RiskData, spec, device) -> dict[str, float]:
        from ecomine.models.risk_calibration import _sigmoid
        from ecomine.train.risk_eval import binary_metrics

        z = predict_logits(model, data, data.valid, device)
        m = binary_metrics(data.valid.labels, _sigmoid(z))
        return {"loss": m["log_loss"], "roc_auc": m["roc_auc"], "pr_auc": m["pr_auc"], "brier": m["brier"]}

    def calibrate(self, model, data: RiskData, spec):
        """(Calibrator, threshold choice) fitted on the validation split; cached on the model."""
        from ecomine.models.risk import Calibrator
        from ecomine.train.risk_eval import choose_threshold

        if getattr(model, "risk_calibration", None) is None:
            z = predict_logits(model, data, data.valid)
            cal = Calibrator.fit(spec.model.calibration, z, data.valid.labels)
            t = spec.model.threshold
            thr = choose_threshold(data.valid.labels, cal(z), target_precision=t.target_precision, cost_ratio=t.cost_ratio)
            model.risk_calibration = (cal, thr)
        return model.risk_calibration

    def evaluate(self, model, data: RiskData, spec) -> dict[str, Any]:
        from ecomine.models.risk_calibration import _sigmoid
        from ecomine.train.risk_eval import (
            MODEL_NAME, binary_metrics, choose_threshold, decision_report, fit_lightgbm, fit_logistic_regression,
            reliability_bins,
        )

        y_valid, y_test = data.valid.labels, data.test.labels
        t = spec.model.threshold
        cal, thr = self.calibrate(model, data, spec)
        z_test = predict_logits(model, data, data.test)
        # "uncalibrated": the head's own output, before the prior correction and the calibrator
        p_test, p_raw = cal(z_test), _sigmoid(z_test - _logit_offset(model))
        results: dict[str, Any] = {
            MODEL_NAME: {
                **binary_metrics(y_test, p_test),
                "reliability": reliability_bins(y_test, p_test),
                "uncalibrated": {**binary_metrics(y_test, p_raw), "reliability": reliability_bins(y_test, p_raw)},
                "calibration": cal.to_json(),
                "threshold_rule": thr,
                "decision": decision_report(y_test, p_test, thr["threshold"]),
            }
        }
        x_tr, y_tr = data.train.numeric, data.train.labels
        baselines = {
            "logistic_regression": (fit_logistic_regression(x_tr, y_tr, seed=spec.optim.seed), "numeric"),
            "lightgbm": (fit_lightgbm(data.train.raw, y_tr, data.valid.raw, y_valid, seed=spec.optim.seed), "raw"),
        }
        for name, (clf, kind) in baselines.items():
            pv = clf.predict_proba(getattr(data.valid, kind))[:, 1]
            pt = clf.predict_proba(getattr(data.test, kind))[:, 1]
            thr_b = choose_threshold(y_valid, pv, target_precision=t.target_precision, cost_ratio=t.cost_ratio)
            results[name] = {
                **binary_metrics(y_test, pt), "reliability": reliability_bins(y_test, pt),
                "threshold_rule": thr_b, "decision": decision_report(y_test, pt, thr_b["threshold"]),
            }
        model.risk_results = results
        return results

    def headline(self, results: dict[str, Any]) -> dict[str, Any]:
        from ecomine.train.reports import report_json
        from ecomine.train.risk_eval import MODEL_NAME

        r = results[MODEL_NAME]
        keep = {k: r[k] for k in ("roc_auc", "pr_auc", "brier", "log_loss", "n", "positives") if k in r}
        keep["brier_uncalibrated"] = r.get("uncalibrated", {}).get("brier")
        keep["threshold"] = r.get("decision", {}).get("threshold")
        return report_json({MODEL_NAME: keep})[MODEL_NAME]

    def save(self, folder: Path, model, data: RiskData, spec) -> None:
        from ecomine.models.risk import save_risk_model
        from ecomine.models.risk_lightgbm import RiskBooster, save_lightgbm_risk
        from ecomine.train.risk_eval import write_reliability_plot

        cal, thr = self.calibrate(model, data, spec)
        save = save_lightgbm_risk if isinstance(model, RiskBooster) else partial(save_risk_model, scaler=data.scaler)
        save(
            folder, model, calibrator=cal, threshold=thr["threshold"], customers=data.customers, items=data.items,
            meta={"threshold_rule": thr, "windows": data.windows, "horizon_days": spec.model.horizon_days},
        )
        if getattr(model, "risk_results", None):
            write_reliability_plot(model.risk_results, Path(folder) / "reliability.png")

    def load(self, folder: Path, spec, data: RiskData):
        from ecomine.models.risk import load_risk_model

        loaded = load_risk_model(folder)
        if hasattr(loaded, "booster"):  # a LightGBM version reads the raw features, in its own order
            if loaded.booster.config.features != data.scaler.names:
                raise ValueError(f"the LightGBM version reads features {loaded.booster.config.features}, "
                                 f"the data has {data.scaler.names}")
            return loaded.booster
        if loaded.scaler.names != data.scaler.names or not np.allclose(loaded.scaler.mean, data.scaler.mean, atol=1e-6):
            raise ValueError("the numeric feature scaling of the data no longer matches the model's (different training data)")
        return loaded.module

    def format_report(self, results: dict[str, Any], title: str):
        from ecomine.train.risk_eval import format_report

        return format_report(results, title=title)

    def fingerprint(self, data: RiskData) -> str:
        return data.fingerprint

    def profile(self, folder: Path, model, data: RiskData, spec):
        from ecomine.data.features import RISK_FEATURES
        from ecomine.train.profiles import risk_profile

        cal, _ = self.calibrate(model, data, spec)
        p_line = cal(predict_logits(model, data, data.test))
        raw = data.test.raw
        return risk_profile(raw[:, RISK_FEATURES.index("quantity")], raw[:, RISK_FEATURES.index("price")],
                            [str(o) for o in data.test_keys["order_id"].to_list()], p_line, seed=spec.optim.seed)

    def warm_start_vocab(self, spec, data: RiskData) -> tuple[None, None]:
        return None, None

    def fit_lightgbm(self, spec, data: RiskData):
        return fit_lightgbm_classifier(spec, data)


def _logit_offset(model) -> float:
    """The prior correction inside `predict_logits`' output (torch module or LightGBM booster)."""
    offset = getattr(model, "logit_offset", None)
    return float(offset) if offset is not None else float(model.config.logit_offset)


def fit_lightgbm_classifier(spec, data: RiskData):
    """`model.classifier: lightgbm`: a booster on the training lines the encoder would see (`data.train_index`:
    negatives sampled, capped), weighted and prior-corrected by the same pos_weight / offset, early-stopped
    on the validation split. Returns a `models.risk_lightgbm.RiskBooster`."""
    from ecomine.models.risk_lightgbm import RiskLightGBMConfig, fit_risk_booster
    from ecomine.specs import RiskLightGBMSpec

    settings = spec.model.lightgbm or RiskLightGBMSpec()
    config = RiskLightGBMConfig(**settings.model_dump(), seed=spec.optim.seed, pos_weight=data.pos_weight,
                                logit_offset=data.logit_offset, features=list(data.scaler.names))
    rows = data.train_index
    return fit_risk_booster(config, data.train.raw[rows], data.train.labels[rows], data.valid.raw, data.valid.labels)


TASK = RiskTask()
