"""Discrete decoding and pass@k."""

from __future__ import annotations

import itertools
from math import comb

import pytest
import torch

from cotscope.cot2 import CoT2Model, ModelConfig, pass_at_k, pass_at_k_curve
from cotscope.cot2._discrete import decode_discrete


@pytest.mark.parametrize(("n", "c"), [(5, 0), (5, 1), (5, 3), (10, 10), (6, 2)])
def test_pass_at_k_matches_enumeration(n: int, c: int) -> None:
    outcomes = [1] * c + [0] * (n - c)
    for k in range(1, n + 1):
        subsets = list(itertools.combinations(outcomes, k))
        direct = sum(any(s) for s in subsets) / comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(direct)


def test_pass_at_k_rejects_k_above_n() -> None:
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


def test_greedy_decoding_is_argmax_and_curve_is_monotone() -> None:
    torch.manual_seed(0)
    m = CoT2Model(ModelConfig(layers=1, heads=2, dim=16), vocab_size=10, max_len=8).eval()
    prompts = torch.randint(0, 10, (16, 4))
    trace, ans, ent = decode_discrete(m, prompts, 3)
    assert trace.shape == (16, 3) and ans.shape == (16,) and ent.shape == (3,)
    z = m(prompts)[:, -1]
    assert torch.equal(trace[:, 0], z.argmax(-1))
    curve = pass_at_k_curve(m, prompts, ans, 3, n=6, generator=torch.Generator().manual_seed(0))
    vals = [curve[k] for k in range(1, 7)]
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(vals))
