"""Training-time augmentation of item sequences and item/customer texts.

Sits after splits in the data layer (features -> splits -> **augment** -> models):
trainers apply it to training inputs only, never to validation or test (a
TrainSpec's `augment:` block; its settings are `ecomine.specs.augment`). Every
operation is off by default and seeded, so the same spec, seed and input give the
same output; vectorised (numpy indices over the flattened tokens), no loop per row.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
import pyarrow as pa

from ecomine.specs.augment import AugmentSpec, CropSpec, MaskSpec, ReorderSpec

__all__ = [
    "AugmentSpec",
    "CropSpec",
    "MaskSpec",
    "ReorderSpec",
    "GIFTWARE_SYNONYMS",
    "augment_sequences",
    "augment_text",
]


# Small gift-ware synonym groups (upper case); a word swaps to another of its group.
GIFTWARE_SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("MUG", "CUP"),
    ("BAG", "TOTE"),
    ("HOLDER", "STAND"),
    ("LANTERN", "LAMP"),
    ("SMALL", "MINI", "LITTLE"),
    ("LARGE", "BIG", "JUMBO"),
    ("GIFT", "PRESENT"),
    ("DECORATION", "ORNAMENT", "BAUBLE"),
    ("VINTAGE", "RETRO", "ANTIQUE"),
    ("SIGN", "PLAQUE"),
    ("CUSHION", "PILLOW"),
    ("BOTTLE", "FLASK"),
    ("PLATE", "DISH"),
    ("CHRISTMAS", "XMAS"),
    ("SET", "PACK"),
    ("GARLAND", "BUNTING"),
    ("CERAMIC", "PORCELAIN"),
    ("BOX", "CASE"),
    ("CARD", "NOTECARD"),
    ("TRAY", "PLATTER"),
    ("JAR", "POT"),
    ("BASKET", "HAMPER"),
    ("NAPKINS", "SERVIETTES"),
    ("DOORMAT", "MAT"),
    ("WHITE", "IVORY"),
)


def _synonym_table() -> pl.DataFrame:
    words, alts = [], []
    for group in GIFTWARE_SYNONYMS:
        for w in group:
            words.append(w)
            alts.append([a for a in group if a != w])
    return pl.DataFrame(
        {"__up": words, "__alts": alts}, schema={"__up": pl.String, "__alts": pl.List(pl.String)}
    )


def _swap(tok: pl.Series, do: np.ndarray, u: np.ndarray) -> pl.Series:
    f = (
        pl.DataFrame({"tok": tok})
        .with_columns(pl.col("tok").str.to_uppercase().alias("__up"))
        .join(_synonym_table(), on="__up", how="left", maintain_order="left")
        .with_columns(pl.col("__alts").list.len().fill_null(0).alias("__n"))
    )
    n = f["__n"].to_numpy()
    pick = np.minimum(np.floor(u * n), np.maximum(n - 1, 0)).astype(np.int64)
    t = pl.col("tok")
    alt = pl.col("__alts").list.get(pl.lit(pl.Series(pick)), null_on_oob=True)
    cased = (
        pl.when(t == t.str.to_uppercase())
        .then(alt)
        .when(t == t.str.to_lowercase())
        .then(alt.str.to_lowercase())
        .otherwise(alt.str.to_titlecase())
    )
    swap = pl.lit(pl.Series(do)) & (pl.col("__n") > 0)
    return f.select(pl.when(swap).then(cased).otherwise(t).alias("tok"))["tok"]


def _augment_lists(lists: pl.Series, spec: AugmentSpec, seed: int, *, text: bool) -> pl.Series:
    """Augment a list[str] Series; null lists stay null, empty ones empty."""
    rng = np.random.default_rng(seed)
    is_null = lists.is_null().to_numpy()
    lengths = lists.list.len().fill_null(0).to_numpy().astype(np.int64)
    m, total = len(lengths), int(lengths.sum())
    tok = lists.filter(pl.Series(lengths > 0)).explode().cast(pl.String)
    seq = np.repeat(np.arange(m), lengths)
    idx = np.arange(total)  # positions in `tok`, rearranged by each operation

    def starts_of(lens: np.ndarray) -> np.ndarray:
        return np.cumsum(lens) - lens

    if text and spec.synonym_swap > 0:
        tok = _swap(tok, rng.random(total) < spec.synonym_swap, rng.random(total))

    if spec.crop.prob > 0:
        apply = rng.random(m) < spec.crop.prob
        lo = np.maximum(1, np.ceil(spec.crop.min_ratio * lengths - 1e-9)).astype(np.int64)
        keep_len = lo + np.floor(rng.random(m) * (lengths - lo + 1)).astype(np.int64)
        keep_len = np.where(apply, np.minimum(keep_len, lengths), lengths)
        start = np.floor(rng.random(m) * (lengths - keep_len + 1)).astype(np.int64)
        pos = np.arange(len(idx)) - starts_of(lengths)[seq]
        keep = (pos >= start[seq]) & (pos < start[seq] + keep_len[seq])
        idx, seq, lengths = idx[keep], seq[keep], keep_len

    if spec.reorder.prob > 0:
        apply = rng.random(m) < spec.reorder.prob
        w = np.minimum(spec.reorder.window, lengths)
        start = np.floor(rng.random(m) * (lengths - w + 1)).astype(np.int64)
        pos = np.arange(len(idx)) - starts_of(lengths)[seq]
        inside = apply[seq] & (pos >= start[seq]) & (pos < start[seq] + w[seq])
        # a window's tokens get keys in [start, start + 1): shuffled among themselves,
        # still after the tokens before it and before the tokens after it
        key = np.where(inside, start[seq] + rng.random(len(idx)), pos.astype(np.float64))
        order = np.lexsort((key, seq))
        idx, seq = idx[order], seq[order]

    out = tok.gather(pl.Series(idx, dtype=pl.Int64)) if len(idx) else tok.clear()

    if spec.mask.prob > 0:
        hit = pl.Series(rng.random(len(idx)) < spec.mask.prob)
        out = pl.select(pl.when(hit).then(pl.lit(spec.mask.token)).otherwise(out)).to_series()

    if spec.token_dropout > 0:
        drop = rng.random(len(idx)) < spec.token_dropout
        kept = np.bincount(seq[~drop], minlength=m)
        last = starts_of(lengths) + lengths - 1
        rescue = (kept == 0) & (lengths > 0)
        drop[last[rescue]] = False  # never empty a sequence: keep its last token
        out = out.filter(pl.Series(~drop))
        seq = seq[~drop]
        lengths = np.bincount(seq, minlength=m)

    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    values = out.cast(pl.String).to_arrow()
    arr = pa.ListArray.from_arrays(offsets, values, mask=pa.array(is_null))
    return pl.Series(lists.name, arr, dtype=pl.List(pl.String))


def augment_sequences(
    items: Sequence[Sequence[str]] | pl.Series,
    spec: AugmentSpec,
    *,
    seed: int | None = None,
) -> list[list[str]] | pl.Series:
    """Augment item sequences; returns the same kind it was given.

    `items`: a list of lists of item ids, or a polars list[str] Series (e.g. the
    ``items`` column of splits' train frame). `seed` overrides `spec.seed` (pass
    ``spec.seed + epoch`` for fresh draws each epoch). When `spec` enables nothing
    the input is returned unchanged. What each operation guarantees:

    - crop: a contiguous run of the sequence, length in [ceil(min_ratio*n), n]
    - reorder: same length and same multiset; only one window of length
      min(window, n) moves
    - mask: same length; a changed position holds `mask.token`
    - token_dropout: an order-preserving subsequence, never empty when the input
      was not (the last token survives)
    synonym_swap does not apply to item ids.
    """
    if not spec.enabled(text=False):
        return items
    s = items if isinstance(items, pl.Series) else pl.Series("items", list(items), dtype=pl.List(pl.String))
    out = _augment_lists(s, spec, spec.seed if seed is None else seed, text=False)
    return out if isinstance(items, pl.Series) else out.to_list()


def augment_text(
    texts: Sequence[str] | pl.Series,
    spec: AugmentSpec,
    *,
    seed: int | None = None,
) -> list[str] | pl.Series:
    """Augment texts word by word; returns the same kind it was given.

    Words are whitespace-separated tokens (an enabled spec therefore also collapses
    runs of whitespace); the same operations as `augment_sequences` apply to them,
    plus `synonym_swap` from `GIFTWARE_SYNONYMS` (case-insensitive match, the
    word's case kept: UPPER, lower or Title). Null texts stay null. Identity when
    `spec` enables nothing.
    """
    if not spec.enabled(text=True):
        return texts
    s = texts if isinstance(texts, pl.Series) else pl.Series("text", list(texts), dtype=pl.String)
    words = s.str.replace_all(r"\s+", " ").str.strip_chars().str.split(" ")
    out = _augment_lists(words, spec, spec.seed if seed is None else seed, text=True).list.join(" ")
    out = out.alias(s.name)
    return out if isinstance(texts, pl.Series) else out.to_list()
