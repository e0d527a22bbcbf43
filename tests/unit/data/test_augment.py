"""Augmentation: identity when off, deterministic with a seed, each operation's guarantees."""

from __future__ import annotations

import math
from collections import Counter

import polars as pl
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ecomine.data.augment import (
    AugmentSpec,
    CropSpec,
    MaskSpec,
    ReorderSpec,
    augment_sequences,
    augment_text,
)

SEQS = [[f"i{k}" for k in range(n)] for n in (0, 1, 2, 5, 9, 20)] * 20
seqs_st = st.lists(
    st.lists(st.integers(0, 50).map(lambda v: f"i{v}"), min_size=0, max_size=15), min_size=1, max_size=15
)


def test_identity_when_off() -> None:
    spec = AugmentSpec()
    assert not spec.enabled() and not spec.enabled(text=True)
    assert augment_sequences(SEQS, spec) is SEQS
    s = pl.Series("items", SEQS)
    assert augment_sequences(s, spec) is s
    texts = ["RED  MUG ", None]
    assert augment_text(texts, spec) is texts
    # synonym_swap alone does nothing to item ids
    assert augment_sequences(SEQS, AugmentSpec(synonym_swap=1.0)) is SEQS


def test_deterministic_with_seed_and_varies_across_seeds() -> None:
    spec = AugmentSpec(
        crop=CropSpec(prob=0.5), mask=MaskSpec(prob=0.2), reorder=ReorderSpec(prob=0.5), token_dropout=0.1, seed=7
    )
    a = augment_sequences(SEQS, spec)
    assert a == augment_sequences(SEQS, spec)
    assert a == augment_sequences(SEQS, spec.model_copy(update={"seed": 0}), seed=7)
    assert a != augment_sequences(SEQS, spec, seed=8)
    assert a != SEQS
    t = ["WHITE HANGING HEART T-LIGHT HOLDER", "small gift box"] * 10
    tspec = spec.model_copy(update={"synonym_swap": 0.5})
    assert augment_text(t, tspec) == augment_text(t, tspec)


def test_series_in_series_out_nulls_kept() -> None:
    s = pl.Series("items", [["a", "b", "c"], None, []], dtype=pl.List(pl.String))
    out = augment_sequences(s, AugmentSpec(mask=MaskSpec(prob=1.0, token="<m>")))
    assert isinstance(out, pl.Series) and out.name == "items"
    assert out.to_list() == [["<m>", "<m>", "<m>"], None, []]
    txt = augment_text(pl.Series("t", ["a b", None]), AugmentSpec(mask=MaskSpec(prob=1.0)))
    assert txt.name == "t" and txt.to_list() == ["[MASK] [MASK]", None]


@settings(max_examples=60, deadline=None)
@given(seqs_st, st.floats(0.1, 1.0), st.integers(0, 10_000))
def test_crop_keeps_a_contiguous_run(seqs: list[list[str]], ratio: float, seed: int) -> None:
    out = augment_sequences(seqs, AugmentSpec(crop=CropSpec(prob=1.0, min_ratio=ratio)), seed=seed)
    for src, got in zip(seqs, out, strict=True):
        n = len(src)
        assert len(got) >= (max(1, math.ceil(ratio * n - 1e-9)) if n else 0) and len(got) <= n
        starts = [i for i in range(n - len(got) + 1) if src[i : i + len(got)] == got]
        assert starts, (src, got)


@settings(max_examples=60, deadline=None)
@given(seqs_st, st.integers(0, 10_000))
def test_mask_keeps_length_and_unmasked_positions(seqs: list[list[str]], seed: int) -> None:
    out = augment_sequences(seqs, AugmentSpec(mask=MaskSpec(prob=0.5, token="[M]")), seed=seed)
    for src, got in zip(seqs, out, strict=True):
        assert len(got) == len(src)
        assert all(g in (s, "[M]") for s, g in zip(src, got, strict=True))


@settings(max_examples=60, deadline=None)
@given(seqs_st, st.integers(2, 5), st.integers(0, 10_000))
def test_reorder_moves_one_window_only(seqs: list[list[str]], window: int, seed: int) -> None:
    out = augment_sequences(seqs, AugmentSpec(reorder=ReorderSpec(prob=1.0, window=window)), seed=seed)
    for src, got in zip(seqs, out, strict=True):
        assert len(got) == len(src) and Counter(got) == Counter(src)
        moved = [i for i, (s, g) in enumerate(zip(src, got, strict=True)) if s != g]
        if moved:
            assert moved[-1] - moved[0] < window


@settings(max_examples=60, deadline=None)
@given(seqs_st, st.floats(0.0, 1.0), st.integers(0, 10_000))
def test_dropout_keeps_an_ordered_nonempty_subsequence(seqs: list[list[str]], p: float, seed: int) -> None:
    out = augment_sequences(seqs, AugmentSpec(token_dropout=p), seed=seed)
    for src, got in zip(seqs, out, strict=True):
        assert (len(got) >= 1) == (len(src) >= 1)
        it = iter(src)
        assert all(any(g == s for s in it) for g in got)  # got is a subsequence of src
    if p == 1.0:
        assert all(got == src[-1:] for src, got in zip(seqs, out, strict=True))


def test_synonym_swap_keeps_case() -> None:
    spec = AugmentSpec(synonym_swap=1.0)
    out = augment_text(["RED MUG", "red mug", "Red Mug", "Christmas  Cushion"], spec)
    assert out == ["RED CUP", "red cup", "Red Cup", "Xmas Pillow"]
    none = augment_text(["RED MUG"], AugmentSpec(synonym_swap=0.0, token_dropout=0.0001), seed=1)
    assert none == ["RED MUG"]


def test_text_ops_are_word_level() -> None:
    out = augment_text(["a b c d e f"], AugmentSpec(crop=CropSpec(prob=1.0, min_ratio=0.5)), seed=3)
    words = out[0].split(" ")
    assert 3 <= len(words) <= 6 and " ".join(words) in "a b c d e f"


def test_spec_validation_and_yaml_round_trip() -> None:
    spec = AugmentSpec.model_validate(
        yaml.safe_load("crop: {prob: 0.3, min_ratio: 0.5}\nmask: {prob: 0.1}\nseed: 3\n")
    )
    assert spec.crop.min_ratio == 0.5 and spec.mask.token == "[MASK]" and spec.enabled()
    assert AugmentSpec.model_validate(yaml.safe_load(yaml.safe_dump(spec.model_dump()))) == spec
    with pytest.raises(ValidationError, match="prob"):
        AugmentSpec.model_validate({"crop": {"prob": 1.5}})
    with pytest.raises(ValidationError, match="shuffle"):
        AugmentSpec.model_validate({"shuffle": 0.2})
    with pytest.raises(ValidationError, match="window"):
        AugmentSpec.model_validate({"reorder": {"prob": 0.2, "window": 1}})
