"""Augmentation settings (`AugmentSpec`) and the TrainSpec block that turns them on.

The operations themselves are `ecomine.data.augment`; the recommend task
applies `augment.sequences` to its training split only (`ecomine.train.recommend_task`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CropSpec", "MaskSpec", "ReorderSpec", "AugmentSpec", "TrainAugmentSpec"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CropSpec(_Spec):
    """Keep one contiguous run of a sequence."""

    prob: float = Field(0.0, ge=0.0, le=1.0, description="chance a sequence is cropped")
    min_ratio: float = Field(
        0.6, gt=0.0, le=1.0, description="kept length is uniform in [ceil(min_ratio*n), n]"
    )


class MaskSpec(_Spec):
    """Replace tokens by a mask token (length kept)."""

    prob: float = Field(0.0, ge=0.0, le=1.0, description="chance each token is masked")
    token: str = Field("[MASK]", min_length=1, description="the replacement token")


class ReorderSpec(_Spec):
    """Shuffle one contiguous window of a sequence (length and multiset kept)."""

    prob: float = Field(0.0, ge=0.0, le=1.0, description="chance a sequence is reordered")
    window: int = Field(3, ge=2, description="window length (whole sequence when shorter)")


class AugmentSpec(_Spec):
    """Which augmentations to apply; the default applies none (identity).

    Applied in this order: synonym_swap (text only), crop, reorder, mask,
    token_dropout. Tokens are items for sequences, whitespace-separated words for
    text.
    """

    crop: CropSpec = CropSpec()
    mask: MaskSpec = MaskSpec()
    reorder: ReorderSpec = ReorderSpec()
    token_dropout: float = Field(
        0.0, ge=0.0, le=1.0, description="chance each token is dropped (a sequence never empties)"
    )
    synonym_swap: float = Field(
        0.0, ge=0.0, le=1.0, description="text only: chance each word with a synonym is swapped"
    )
    seed: int = Field(0, description="random seed; pass seed=... per call (e.g. seed + epoch) to vary")

    def enabled(self, *, text: bool = False) -> bool:
        """Whether any operation can change an input (synonym_swap counts for text only)."""
        probs = [self.crop.prob, self.mask.prob, self.reorder.prob, self.token_dropout]
        if text:
            probs.append(self.synonym_swap)
        return any(p > 0 for p in probs)


class TrainAugmentSpec(_Spec):
    """`augment:` of a TrainSpec: extra augmented copies of the training split (validation and test untouched)."""

    sequences: AugmentSpec = Field(default_factory=AugmentSpec, description="recommend: crop / reorder / mask / dropout")
    copies: int = Field(1, ge=1, le=8, description="augmented copies of every training sequence, added to the originals")

    def enabled(self) -> bool:
        return self.sequences.enabled()
