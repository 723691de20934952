"""A GPT-2-style decoder in plain PyTorch whose input at a continuous step is E^T alpha."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from cotscope.cot2._config import ModelConfig


class _Block(nn.Module):
    """Pre-LayerNorm transformer block: causal self-attention then a GELU MLP."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.heads = cfg.heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, cfg.mlp_ratio * d)
        self.out = nn.Linear(cfg.mlp_ratio * d, d)
        self.drop = nn.Dropout(cfg.dropout)
        self.p_drop = cfg.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, n, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        a = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.p_drop if self.training else 0.0
        )
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, n, d)))
        return x + self.drop(self.out(F.gelu(self.fc(self.ln2(x)))))


class CoT2Model(nn.Module):
    """Decoder-only transformer trained from scratch on a task's token sequences.

    Discrete tokens are embedded by lookup; a continuous token alpha (a distribution over the
    vocabulary) is embedded as ``E^T alpha``, the convex combination of token embeddings. A one-hot
    alpha therefore gives exactly the lookup embedding.

    Args:
        cfg: Layers, heads, width.
        vocab_size: V.
        max_len: Longest sequence (prompt + reasoning steps) the position table must cover.
    """

    def __init__(self, cfg: ModelConfig, vocab_size: int, max_len: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.max_len = max_len
        self.tok = nn.Embedding(vocab_size, cfg.dim)
        self.pos = nn.Embedding(max_len, cfg.dim)
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.head.weight = self.tok.weight
        self.apply(self._init)
        # GPT-2's scaled init of the residual projections keeps the residual stream's variance flat.
        for name, p in self.named_parameters():
            if name.endswith(("proj.weight", "out.weight")):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * cfg.layers))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 0.02)

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """Embeddings of discrete ids ``(..., n) -> (..., n, d)``."""
        return self.tok(ids)

    def embed_dists(self, alpha: torch.Tensor) -> torch.Tensor:
        """Continuous-token embeddings ``E^T alpha``: ``(..., V) -> (..., d)``."""
        return alpha @ self.tok.weight

    def forward_embeds(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, n, V)`` for input embeddings ``(B, n, d)`` (positions are added here)."""
        n = x.shape[1]
        if n > self.max_len:
            raise ValueError(f"sequence of {n} tokens exceeds max_len={self.max_len}")
        h = x + self.pos.weight[:n]
        for blk in self.blocks:
            h = blk(h)
        return self.head(self.ln_f(h))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, n, V)`` for discrete ids ``(B, n)``."""
        return self.forward_embeds(self.embed_tokens(ids))

    def forward_mixed(self, prompts: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """Logits for a discrete prompt followed by continuous reasoning tokens.

        Args:
            prompts: ``(B, P)`` ids.
            steps: ``(B, t, V)`` distributions fed at the first t reasoning positions (t may be 0).

        Returns:
            ``(B, t + 1, V)`` logits at the positions that predict reasoning steps 1..t+1 (the last
            one predicts step t + 1, or the answer when t = T).
        """
        x = torch.cat([self.embed_tokens(prompts), self.embed_dists(steps)], dim=1)
        return self.forward_embeds(x)[:, prompts.shape[1] - 1 :]

    def num_parameters(self) -> int:
        """Trainable parameters (tied weights counted once)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
