"""CSFT loss on a hand-computed case; teacher forcing vs self-feeding."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from cotscope.cot2 import CoT2Model, ModelConfig
from cotscope.cot2._csft import csft_loss, fed_logits, teacher_forced_logits


def test_csft_loss_hand_computed() -> None:
    # V = 3, T = 1, B = 1. Logits 0 everywhere -> softmax uniform (1/3 each).
    step = torch.zeros(1, 1, 3)
    target = torch.tensor([[[0.5, 0.5, 0.0]]])
    # KL(alpha* || u) = sum a log(a / (1/3)) = log(0.5 * 3) = log 1.5
    ans_logits = torch.tensor([[math.log(2.0), 0.0, 0.0]])  # softmax = (1/2, 1/4, 1/4)
    loss = csft_loss(step, ans_logits, target, torch.tensor([1]))
    assert float(loss.kl) == pytest.approx(math.log(1.5), abs=1e-6)
    assert float(loss.ce) == pytest.approx(math.log(4.0), abs=1e-6)
    assert float(loss.total) == pytest.approx(math.log(1.5) + math.log(4.0), abs=1e-6)


def test_csft_kl_sums_over_steps_and_averages_over_batch() -> None:
    torch.manual_seed(0)
    z = torch.randn(2, 3, 5)
    tgt = torch.softmax(torch.randn(2, 3, 5), -1)
    direct = sum(
        float((tgt[b, t] * (tgt[b, t].log() - F.log_softmax(z[b, t], -1))).sum())
        for b in range(2)
        for t in range(3)
    ) / 2
    loss = csft_loss(z, torch.zeros(2, 5), tgt, torch.tensor([0, 1]))
    assert float(loss.kl) == pytest.approx(direct, rel=1e-5)


def test_one_hot_targets_give_cross_entropy() -> None:
    torch.manual_seed(1)
    z = torch.randn(4, 2, 6)
    toks = torch.randint(0, 6, (4, 2))
    loss = csft_loss(z, torch.zeros(4, 6), F.one_hot(toks, 6).float(), torch.zeros(4, dtype=torch.long))
    ce = F.cross_entropy(z.reshape(-1, 6), toks.reshape(-1), reduction="sum") / 4
    assert float(loss.kl) == pytest.approx(float(ce), rel=1e-5)


def test_teacher_forcing_parallel_equals_sequential() -> None:
    torch.manual_seed(0)
    m = CoT2Model(ModelConfig(layers=1, heads=2, dim=16), vocab_size=9, max_len=7).eval()
    prompts = torch.randint(0, 9, (3, 4))
    tgt = torch.softmax(torch.randn(3, 3, 9), -1)
    s1, a1 = teacher_forced_logits(m, prompts, tgt)
    # teacher_prob just below 1 takes the sequential path but (u < p) always feeds the teacher.
    s2, a2 = fed_logits(m, prompts, tgt, teacher_prob=1.0 - 1e-12)
    assert torch.allclose(s1, s2, atol=1e-5) and torch.allclose(a1, a2, atol=1e-5)
    s3, _ = fed_logits(m, prompts, tgt, teacher_prob=0.0)
    assert torch.allclose(s3[:, 0], s1[:, 0], atol=1e-5)  # step 1 depends on the prompt only
    assert not torch.allclose(s3[:, 1:], s1[:, 1:])
