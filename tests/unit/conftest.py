"""Fixtures the unit tests share: a tiny text encoder built locally (no download)."""

from __future__ import annotations

from collections.abc import Callable

import pytest


@pytest.fixture(scope="session")
def tiny_encoder_factory(tmp_path_factory) -> Callable[..., str]:
    """`make(layers)` -> a folder holding an N-layer, 32-wide BERT with the default encoder's tokenizer (built once per depth)."""
    made: dict[int, str] = {}

    def make(layers: int = 1) -> str:
        if layers not in made:
            import torch
            from transformers import AutoTokenizer, BertConfig, BertModel

            from ecomine.models.text_encoder import resolve_encoder

            folder = tmp_path_factory.mktemp(f"tiny-bert-{layers}")
            tok = AutoTokenizer.from_pretrained(resolve_encoder("default"))
            tok.save_pretrained(str(folder))
            torch.manual_seed(0)
            BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                                 intermediate_size=64, max_position_embeddings=128)).save_pretrained(str(folder))
            made[layers] = str(folder)
        return made[layers]

    return make
