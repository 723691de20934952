"""Multi-token and Dirichlet sampling: K = 1 is discrete CoT, simplex, log-probs and ratios."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from cotscope.cot2 import CoT2Model, ModelConfig
from cotscope.cot2._discrete import decode_discrete
from cotscope.cot2._sampling import (
    decode_continuous,
    dirichlet_concentration,
    dirichlet_log_prob,
    mts_log_prob,
    rollout_log_probs,
    sample_log_dirichlet,
    sample_rollouts,
)


def _model(seed: int = 0) -> CoT2Model:
    torch.manual_seed(seed)
    return CoT2Model(ModelConfig(layers=1, heads=2, dim=16), vocab_size=10, max_len=8).eval()


def test_k1_mts_equals_discrete_sampling() -> None:
    m = _model()
    prompts = torch.randint(0, 10, (64, 4))
    ro = sample_rollouts(m, prompts, 3, "mts", k=1, generator=torch.Generator().manual_seed(5))
    trace, ans, _ = decode_discrete(m, prompts, 3, greedy=False, generator=torch.Generator().manual_seed(5))
    assert ro.actions is not None
    assert torch.equal(ro.actions[..., 0], trace)
    assert torch.equal(ro.answer, ans)
    assert torch.equal(ro.fed, F.one_hot(trace, 10).float())


def test_mts_feeds_mean_of_k_one_hots() -> None:
    m = _model()
    gen = torch.Generator().manual_seed(0)
    ro = sample_rollouts(m, torch.randint(0, 10, (8, 4)), 3, "mts", k=4, generator=gen)
    assert ro.actions is not None and ro.actions.shape == (8, 3, 4)
    expect = F.one_hot(ro.actions, 10).float().mean(2)
    assert torch.allclose(ro.fed, expect)
    assert set((ro.fed * 4).round().unique().tolist()) <= {0.0, 1.0, 2.0, 3.0, 4.0}


def test_mts_log_prob_and_ratio_direct() -> None:
    torch.manual_seed(0)
    z = torch.randn(5, 7)
    acts = torch.randint(0, 7, (5, 3))
    p = torch.softmax(z, -1)
    direct = torch.stack([torch.log(p[b, acts[b]]).sum() / 3 for b in range(5)])
    assert torch.allclose(mts_log_prob(z, acts), direct, atol=1e-5)
    z2 = z + torch.randn(5, 7)
    p2 = torch.softmax(z2, -1)
    ratio = torch.exp(mts_log_prob(z2, acts) - mts_log_prob(z, acts))
    # The paper's ratio: the geometric mean of the K per-token ratios.
    direct_ratio = torch.stack([torch.prod(p2[b, acts[b]] / p[b, acts[b]]) ** (1 / 3) for b in range(5)])
    assert torch.allclose(ratio, direct_ratio, rtol=1e-4)
    # The official form: the product of the per-token ratios under softmax(z / K).
    q, q2 = torch.softmax(z / 3, -1), torch.softmax(z2 / 3, -1)
    off = torch.exp(mts_log_prob(z2, acts, "official") - mts_log_prob(z, acts, "official"))
    direct_off = torch.stack([torch.prod(q2[b, acts[b]] / q[b, acts[b]]) for b in range(5)])
    assert torch.allclose(off, direct_off, rtol=1e-4)


def test_dirichlet_samples_on_simplex_and_log_prob_matches_torch() -> None:
    m = _model()
    ro = sample_rollouts(m, torch.randint(0, 10, (16, 4)), 3, "dirichlet", gamma=5.0,
                         generator=torch.Generator().manual_seed(0))
    assert ro.actions is None
    assert bool((ro.fed >= 0).all())
    assert torch.allclose(ro.fed.sum(-1), torch.ones(16, 3), atol=1e-5)
    z = torch.randn(4, 6)
    x = torch.distributions.Dirichlet(torch.full((6,), 2.0)).sample((4,))
    ref = torch.distributions.Dirichlet(dirichlet_concentration(z, 3.0)).log_prob(x)
    assert torch.allclose(dirichlet_log_prob(z, x.log(), 3.0), ref, atol=1e-4)
    assert ro.log_fed is not None and torch.allclose(ro.log_fed.exp(), ro.fed)


def test_log_space_dirichlet_matches_moments_and_does_not_underflow() -> None:
    conc = torch.tensor([0.001, 0.01, 2.0, 5.0])
    log_a = sample_log_dirichlet(conc.expand(20000, 4).contiguous(), torch.Generator().manual_seed(0))
    assert bool(torch.isfinite(log_a).all())
    assert float(log_a[:, 0].min()) < -200  # far below float32's smallest positive number
    mean = log_a.exp().mean(0)
    assert torch.allclose(mean, conc / conc.sum(), atol=0.01)


def test_dirichlet_sampling_is_seeded() -> None:
    m = _model()
    p = torch.randint(0, 10, (4, 4))
    a = sample_rollouts(m, p, 2, "dirichlet", generator=torch.Generator().manual_seed(3))
    b = sample_rollouts(m, p, 2, "dirichlet", generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.fed, b.fed)


@pytest.mark.parametrize(("sampling", "form"), [("mts", "geometric"), ("mts", "official"),
                                              ("dirichlet", "scaled"), ("dirichlet", "official")])
def test_recomputed_log_probs_equal_sampling_log_probs(sampling: str, form: str) -> None:
    m = _model()
    mts_ratio = form if sampling == "mts" else "geometric"
    dirichlet = form if sampling == "dirichlet" else "scaled"
    ro = sample_rollouts(m, torch.randint(0, 10, (12, 4)), 3, sampling, k=3, gamma=10.0,  # type: ignore[arg-type]
                         generator=torch.Generator().manual_seed(1), mts_ratio=mts_ratio,  # type: ignore[arg-type]
                         dirichlet=dirichlet)  # type: ignore[arg-type]
    lp, logits = rollout_log_probs(m, ro, sampling, gamma=10.0, mts_ratio=mts_ratio)  # type: ignore[arg-type]
    assert lp.shape == (12, 4) and logits.shape == (12, 4, 10)
    assert torch.allclose(lp, ro.logp, atol=1e-4)  # ratio exactly 1 under the sampling policy


def test_large_k_mts_approaches_continuous_decoding() -> None:
    m = _model()
    prompts = torch.randint(0, 10, (4, 4))
    fed, _, ent = decode_continuous(m, prompts, 1)
    ro = sample_rollouts(m, prompts, 1, "mts", k=20000, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ro.fed[:, 0], fed[:, 0], atol=0.02)
    assert ent.shape == (1,) and float(ent[0]) > 0
