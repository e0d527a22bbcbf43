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

import math
import time
from dataclasses import dataclass, field
from functools import partial
from datetime import date, datetime, time as dtime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

__all__ = [
    "RiskSplitArrays", "RiskData", "RiskTask", "TASK", "split_windows", "prepare_risk_data", "predict_logits",
    "fit_lightgbm_classifier", "reads_same_split",
]


@dataclass
class RiskSplitArrays:
    """One split as arrays: raw features (NaN = missing), scaled features, text row, label."""

    raw: np.ndarray  # [n, F] float32
    numeric: np.ndarray  # [n, 2F] float32 (NumericScaler.transform)
    text_idx: np.ndarray  # [n] int64 into RiskData.texts
    labels: np.ndarray  # [n] float32 (1 = returned within the horizon)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class RiskData:
    """Everything the loop, evaluation and save need (picklable; shipped to workers via ray.put)."""

    train: RiskSplitArrays
    valid: RiskSplitArrays
    test: RiskSplitArrays
    train_index: np.ndarray  # rows of `train` the model trains on (negatives sampled, capped)
    texts: list[str]  # unique encoder inputs
    embeddings: np.ndarray | None  # frozen mode: pooled vectors of `texts` [n_texts, dim]
    input_ids: np.ndarray | None  # lora/full: tokens of `texts` [n_texts, max_length]
    attention_mask: np.ndarray | None
    scaler: Any  # ecomine.models.risk.NumericScaler
    encoder: str  # resolved text encoder (what from_pretrained opens)
    pos_weight: float
    logit_offset: float
    windows: dict[str, str]
    customers: pl.DataFrame  # history state as of the log's end (served requests)
    items: pl.DataFrame
    test_keys: pl.DataFrame  # order_id, user_id, item_id, ts, quantity, price (country) of the test lines
    fingerprint: str
    use_numeric: bool = True  # model.numeric_features (batch() gets no spec)
    prepared_for: dict[str, Any] = field(default_factory=dict)  # the spec fields the arrays depend on
    timings: dict[str, float] = field(default_factory=dict)


def _day(value: date | datetime) -> datetime:
    d = value.date() if isinstance(value, datetime) else value
    return datetime.combine(d, dtime(), tzinfo=timezone.utc)


def split_windows(model_spec, first_ts: datetime, last_ts: datetime) -> dict[str, datetime]:
    """Instants (UTC midnights) of the holdout. Unset dates count back from the log's end:
    test_end = last day - horizon, test_start = test_end - test_days, train_end = test_start -
    horizon, label_cutoff = test_start, valid_start = train_end - valid_days."""
    s, h = model_spec.split, timedelta(days=model_spec.horizon_days)
    test_end = _day(s.test_end) if s.test_end else _day(last_ts) - h
    test_start = _day(s.test_start) if s.test_start else test_end - timedelta(days=s.test_days)
    train_end = _day(s.train_end) if s.train_end else test_start - h
    label_cutoff = _day(s.label_cutoff) if s.label_cutoff else test_start
    valid_start = train_end - timedelta(days=s.valid_days)
    w = {"first": first_ts, "valid_start": valid_start, "train_end": train_end, "label_cutoff": label_cutoff,
         "test_start": test_start, "test_end": test_end, "last": last_ts}
    span = f"the log spans {first_ts:%Y-%m-%d}..{last_ts:%Y-%m-%d}"
    if not first_ts < valid_start:
        raise ValueError(
            f"model.split: training would end before it starts (valid_start {valid_start:%Y-%m-%d}); {span}: "
            f"lower model.horizon_days ({model_spec.horizon_days}), split.test_days or split.valid_days, or set the dates"
        )
    if not (train_end <= test_start < test_end):
        raise ValueError(f"model.split: need train_end <= test_start < test_end, got {train_end:%Y-%m-%d}, "
                         f"{test_start:%Y-%m-%d}, {test_end:%Y-%m-%d}; {span}")
    if label_cutoff < train_end:
        raise ValueError(f"model.split.label_cutoff {label_cutoff:%Y-%m-%d} is before train_end {train_end:%Y-%m-%d}")
    return w


def _sample_train(labels: np.ndarray, ms, seed: int) -> tuple[np.ndarray, float, float]:
    """Rows kept for training and the keep rates of positives and negatives."""
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    neg = neg[rng.random(len(neg)) < ms.negative_sample] if ms.negative_sample < 1 else neg
    cap = ms.max_train_lines
    if cap is not None and len(pos) + len(neg) > cap:
        if len(pos) >= cap // 2:  # keep at least as many negatives as positives
            pos = rng.choice(pos, cap // 2, replace=False)
        neg = rng.choice(neg, cap - len(pos), replace=False)
    n_pos, n_neg = int((labels == 1).sum()), int((labels == 0).sum())
    return np.sort(np.r_[pos, neg]), len(pos) / max(n_pos, 1), len(neg) / max(n_neg, 1)


def _encode(texts: list[str], config, batch_size: int) -> np.ndarray:
    """Pooled encoder vectors of `texts` (the RiskModel's own pooling), shortest texts batched together."""
    import torch

    from ecomine.models.risk import RiskModel
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(config.encoder)
    model = RiskModel(config).eval()
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), model.encoder.config.hidden_size), np.float32)
    with torch.inference_mode():
        for s in range(0, len(texts), batch_size):
            idx = order[s : s + batch_size]
            b = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=config.max_length, return_tensors="pt")
            out[idx] = model.pool(b["input_ids"], b["attention_mask"]).float().numpy()
    return out


def model_config(spec, data: RiskData):
    from ecomine.models.risk import RiskModelConfig

    m = spec.model
    return RiskModelConfig(
        encoder=data.encoder, mode=m.mode, text=m.text, max_length=m.max_length,
        n_numeric=data.scaler.width if m.numeric_features else 0, hidden=list(m.hidden), dropout=m.dropout,
        pos_weight=data.pos_weight, logit_offset=data.logit_offset,
        lora_rank=m.lora.rank, lora_alpha=m.lora.alpha, lora_dropout=m.lora.dropout,
    )


def prepare_risk_data(spec, events: pl.DataFrame | None = None, fingerprint: str = "") -> RiskData:
    """Events -> risk examples -> temporal holdout -> arrays (+ cached text vectors in frozen mode)."""
    from ecomine.data.features import RISK_FEATURES, risk_examples
    from ecomine.models.risk import NumericScaler, history_state, line_texts, numeric_matrix
    from ecomine.models.text_encoder import EncoderNotFound, resolve_encoder
    from ecomine.specs import SpecError
    from ecomine.train.events import load_training_events

    ms = spec.model
    try:
        encoder = resolve_encoder(ms.text_encoder)
    except EncoderNotFound as e:
        raise SpecError(f"model.text_encoder: {e}") from None
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if events is None:
        events, fingerprint = load_training_events(spec.data)
    timings["load_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if ms.label == "item_return" and "linked_order_id" in events.columns:
        # any return of the item by the customer in the window counts, not only the linked one
        events = events.with_columns(pl.lit(None, pl.String).alias("linked_order_id"))
    ex = risk_examples(events, horizon_days=ms.horizon_days)
    if ex.height == 0:
        raise ValueError("data: the log has no purchase lines to score")
    ts_type = ex.schema["ts"]
    first, last = events["ts"].min(), events["ts"].max()
    w = split_windows(ms, first, last)

    def lit(v: datetime) -> pl.Expr:
        return pl.lit(v).cast(ts_type)

    ts, closed = pl.col("ts"), pl.col("label_closed_at")
    train = ex.filter(ts < lit(w["valid_start"]), closed <= lit(w["label_cutoff"]))
    valid = ex.filter(ts >= lit(w["valid_start"]), ts < lit(w["train_end"]), closed <= lit(w["label_cutoff"]))
    test = ex.filter(ts >= lit(w["test_start"]), ts < lit(w["test_end"]), closed <= lit(last))
    for name, frame in (("train", train), ("validation", valid), ("test", test)):
        if frame.height == 0:
            raise ValueError(f"model.split: the {name} split is empty (windows {_fmt(w)})")
    if train["returned"].sum() == 0:
        raise ValueError(f"data: no returned lines in the training split (windows {_fmt(w)})")
    customers, items = history_state(events)
    timings["examples_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    raws = [numeric_matrix(f, RISK_FEATURES) for f in (train, valid, test)]
    scaler = NumericScaler.fit(raws[0], list(RISK_FEATURES))
    index: dict[str, int] = {}
    reads_text = ms.classifier != "lightgbm"
    text_idx = [
        np.fromiter((index.setdefault(t, len(index)) for t in line_texts(f, ms.text)), np.int64, count=f.height)
        if reads_text else np.zeros(f.height, np.int64)
        for f in (train, valid, test)
    ]
    texts = list(index)
    splits = [
        RiskSplitArrays(raw.astype(np.float32), scaler.transform(raw), ti, f["returned"].to_numpy().astype(np.float32))
        for raw, ti, f in zip(raws, text_idx, (train, valid, test))
    ]
    timings["features_s"] = time.perf_counter() - t0

    data = RiskData(
        train=splits[0], valid=splits[1], test=splits[2], train_index=np.zeros(0, np.int64), texts=texts,
        embeddings=None, input_ids=None, attention_mask=None, scaler=scaler, encoder=encoder,
        pos_weight=1.0, logit_offset=0.0, windows=_fmt(w), customers=customers, items=items,
        test_keys=test.select("order_id", "user_id", "item_id", "ts", "quantity", "price",
                              *(["country"] if "country" in test.columns else [])), fingerprint=fingerprint,
        use_numeric=ms.numeric_features, prepared_for=_prepared_for(spec), timings=timings,
    )
    data = _resample(data, spec)
    t0 = time.perf_counter()
    config = model_config(spec, data)
    if not reads_text:
        pass  # a booster reads no text: no vectors, no tokens
    elif ms.mode == "frozen":
        data.embeddings = _encode(texts, config, ms.encode_batch_size)
    else:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(encoder)(
            texts, padding="max_length", truncation=True, max_length=ms.max_length, return_tensors="np"
        )
        data.input_ids = tok["input_ids"].astype(np.int64)
        data.attention_mask = tok["attention_mask"].astype(np.int64)
    timings["encode_s"] = time.perf_counter() - t0
    timings["unique_texts"] = float(len(texts))
    return data


def _prepared_for(spec) -> dict[str, Any]:
    """The spec fields the prepared arrays depend on (a LightGBM spec's arrays depend on no text field)."""
    m = spec.model
    out = {"data": spec.data.model_dump(mode="json"), "horizon_days": m.horizon_days, "label": m.label,
           "split": m.split.model_dump(mode="json")}
    if m.classifier != "lightgbm":
        out.update(text_encoder=m.text_encoder, text=m.text, max_length=m.max_length, frozen=m.mode == "frozen")
    return out


def reads_same_split(a, b) -> bool:
    """Two risk specs cut the same train / validation / test lines (same data, horizon, label, split)."""
    keys = ("data", "horizon_days", "label", "split")
    pa, pb = _prepared_for(a), _prepared_for(b)
    return all(pa[k] == pb[k] for k in keys)


def _resample(data: RiskData, spec) -> RiskData:
    """The same arrays with the training sample, pos_weight and offset of `spec` (cheap)."""
    from dataclasses import replace

    ms = spec.model
    train_index, pos_rate, neg_rate = _sample_train(data.train.labels, ms, spec.optim.seed)
    y = data.train.labels[train_index]
    pos_weight = float((y == 0).sum() / max((y == 1).sum(), 1)) if ms.pos_weight == "auto" else float(ms.pos_weight)
    return replace(data, train_index=train_index, pos_weight=pos_weight, use_numeric=ms.numeric_features,
                   logit_offset=math.log(neg_rate) - math.log(pos_rate) - math.log(pos_weight))


def _fmt(w: dict[str, datetime]) -> dict[str, str]:
    return {k: f"{v:%Y-%m-%d %H:%M}" for k, v in w.items()}


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
        need = _prepared_for(spec)
        if any(data.prepared_for.get(k) != v for k, v in need.items()):
            return prepare_risk_data(spec)
        return _resample(data, spec)

    def driver_init(self, spec, data: RiskData):
        return None  # the text vectors are computed in prepare (evaluation on the driver needs them too)

    def build_model(self, spec, data: RiskData, init):
        from ecomine.models.risk import RiskModel

        return RiskModel(model_config(spec, data))

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
