"""The decoder: continuous inputs with one-hot alpha equal discrete inputs; shapes; causality."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from cotscope.cot2 import CoT2Model, ModelConfig


def _model(dim: int = 16, layers: int = 2, tie: bool = True) -> CoT2Model:
    torch.manual_seed(0)
    cfg = ModelConfig(layers=layers, heads=2, dim=dim, tie_embeddings=tie)
    return CoT2Model(cfg, vocab_size=11, max_len=9)


@pytest.mark.parametrize("tie", [True, False])
def test_one_hot_continuous_forward_equals_discrete(tie: bool) -> None:
    m = _model(tie=tie).eval()
    ids = torch.randint(0, 11, (4, 8))
    prompts, steps = ids[:, :5], ids[:, 5:]
    discrete = m(ids)
    mixed = m.forward_mixed(prompts, F.one_hot(steps, 11).float())
    assert torch.allclose(mixed, discrete[:, 4:], atol=1e-5)


def test_continuous_embedding_is_convex_combination() -> None:
    m = _model()
    alpha = torch.softmax(torch.randn(3, 11), -1)
    assert torch.allclose(m.embed_dists(alpha), alpha @ m.tok.weight)
    mix = 0.3 * F.one_hot(torch.tensor(2), 11).float() + 0.7 * F.one_hot(torch.tensor(5), 11).float()
    assert torch.allclose(m.embed_dists(mix), 0.3 * m.tok.weight[2] + 0.7 * m.tok.weight[5])


def test_causal_masking() -> None:
    m = _model().eval()
    ids = torch.randint(0, 11, (2, 8))
    ids2 = ids.clone()
    ids2[:, 6:] = (ids2[:, 6:] + 1) % 11
    a, b = m(ids), m(ids2)
    assert torch.allclose(a[:, :6], b[:, :6], atol=1e-6)
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_too_long_sequence_rejected() -> None:
    m = _model()
    with pytest.raises(ValueError):
        m(torch.zeros(1, 10, dtype=torch.long))


def test_tied_head_shares_embedding() -> None:
    m = _model(tie=True)
    assert m.head.weight is m.tok.weight
    untied = _model(tie=False)
    assert untied.num_parameters() == m.num_parameters() + 11 * 16


def test_model_config_validation() -> None:
    with pytest.raises(ValueError):
        ModelConfig(dim=10, heads=3)
