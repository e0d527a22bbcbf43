"""The risk task's training data for a TrainSpec: order lines -> labelled, scaled, encoded splits.

Sits at the start of `train` for the risk task, as `recommend_data` does for recommend:
`prepare_risk_data` builds `features.risk_examples`, cuts the temporal holdout (train /
validation / test by purchase day, labels closed before use), scales the numeric features,
serialises each line to text and, in frozen mode, runs the encoder ONCE over the unique
texts. `train.risk_task` (the Task) trains, evaluates and saves on what it returns.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import date, datetime, time as dtime, timedelta, timezone
from typing import Any

import numpy as np
import polars as pl

__all__ = ["RiskSplitArrays", "RiskData", "split_windows", "prepare_risk_data", "reads_same_split", "model_config", "resample",
           "format_windows", "prepared_for"]


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
    """Pooled encoder vectors of `texts` (the RiskNet's own pooling), shortest texts batched together."""
    import torch

    from ecomine.models.risk import RiskNet
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(config.encoder)
    model = RiskNet(config).eval()
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), model.encoder.config.hidden_size), np.float32)
    with torch.inference_mode():
        for s in range(0, len(texts), batch_size):
            idx = order[s : s + batch_size]
            b = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=config.max_length, return_tensors="pt")
            out[idx] = model.pool(b["input_ids"], b["attention_mask"]).float().numpy()
    return out


def model_config(spec, data: RiskData):
    from ecomine.models.risk import RiskNetConfig

    m = spec.model
    return RiskNetConfig(
        encoder=data.encoder, mode=m.mode, text=m.text, max_length=m.max_length,
        n_numeric=data.scaler.width if m.numeric_features else 0, hidden=list(m.hidden), dropout=m.dropout,
        pos_weight=data.pos_weight, logit_offset=data.logit_offset,
        lora_rank=m.lora.rank, lora_alpha=m.lora.alpha, lora_dropout=m.lora.dropout,
    )


def prepare_risk_data(spec, events: pl.DataFrame | None = None, fingerprint: str = "") -> RiskData:
    """Events -> risk examples -> temporal holdout -> arrays (+ cached text vectors in frozen mode).

    ~90 lines: the preparation steps in their order, each a call; the length is the list."""
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
            raise ValueError(f"model.split: the {name} split is empty (windows {format_windows(w)})")
    if train["returned"].sum() == 0:
        raise ValueError(f"data: no returned lines in the training split (windows {format_windows(w)})")
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
        pos_weight=1.0, logit_offset=0.0, windows=format_windows(w), customers=customers, items=items,
        test_keys=test.select("order_id", "user_id", "item_id", "ts", "quantity", "price",
                              *(["country"] if "country" in test.columns else [])), fingerprint=fingerprint,
        use_numeric=ms.numeric_features, prepared_for=prepared_for(spec), timings=timings,
    )
    data = resample(data, spec)
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


def prepared_for(spec) -> dict[str, Any]:
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
    pa, pb = prepared_for(a), prepared_for(b)
    return all(pa[k] == pb[k] for k in keys)


def resample(data: RiskData, spec) -> RiskData:
    """The same arrays with the training sample, pos_weight and offset of `spec` (cheap)."""
    from dataclasses import replace

    ms = spec.model
    train_index, pos_rate, neg_rate = _sample_train(data.train.labels, ms, spec.optim.seed)
    y = data.train.labels[train_index]
    pos_weight = float((y == 0).sum() / max((y == 1).sum(), 1)) if ms.pos_weight == "auto" else float(ms.pos_weight)
    return replace(data, train_index=train_index, pos_weight=pos_weight, use_numeric=ms.numeric_features,
                   logit_offset=math.log(neg_rate) - math.log(pos_rate) - math.log(pos_weight))


def format_windows(w: dict[str, datetime]) -> dict[str, str]:
    return {k: f"{v:%Y-%m-%d %H:%M}" for k, v in w.items()}
