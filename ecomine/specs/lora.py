"""LoraSpec: the LoRA adapter settings (peft) of a fine-tuned transformer.

Sits in ``ecomine.specs`` below ``train`` and ``risk_model``, whose recommend and risk model
specs both take one (`model.lora:`); kept apart so neither imports the other.
"""

from __future__ import annotations

from pydantic import Field

from ecomine.specs._base import StrictModel

__all__ = ["LoraSpec"]


class LoraSpec(StrictModel):
    """peft LoRA adapters: rank, alpha (the update is scaled by alpha / rank) and dropout."""

    enabled: bool = False
    rank: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
