"""A tiny random Llama with SmolLM2's tokenizer and chat template, for training tests that take ~1 s a step.

The vocabulary (49,152 tokens) is SmolLM2's, so chat templates, special tokens and masks are the real ones;
everything else is 2 layers of width 32. Tests load this file by path (tests/ is not a package).
"""

from __future__ import annotations

import json
from pathlib import Path


def build_tiny_lm(folder: Path) -> Path:
    """Write the tiny model and SmolLM2's tokenizer into ``folder`` (once) and return it."""
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from cotscope.models._local import converted_dir, embedded_gguf

    tok = AutoTokenizer.from_pretrained(converted_dir(embedded_gguf("smollm2")))
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def write_jsonl(path: Path, rows: list[object]) -> Path:
    """Rows as JSONL; a ``str`` row is written as the raw line (a malformed record)."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path
