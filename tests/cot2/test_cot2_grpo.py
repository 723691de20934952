"""GRPO: group-normalised advantages, zero-variance groups, clipped surrogate, a learning step."""

from __future__ import annotations

import pytest
import torch

from cotscope.cot2 import CoT2Model, GRPOConfig, ModelConfig
from cotscope.cot2._grpo import clipped_surrogate, group_advantages, grpo_train, kl_to_reference
from cotscope.cot2._tasks import TaskData


def test_group_advantages_normalised_per_group() -> None:
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0]])
    a = group_advantages(r)
    assert torch.allclose(a[0], torch.tensor([1.0, -1.0, -1.0, 1.0]), atol=1e-5)
    assert torch.equal(a[1], torch.zeros(4))  # zero variance -> no signal
    mean, std = 0.25, (0.25 * 0.75) ** 0.5
    assert torch.allclose(a[2], (r[2] - mean) / std, atol=1e-4)
    assert torch.allclose(a.mean(-1), torch.zeros(3), atol=1e-6)


def test_clipped_surrogate_formula() -> None:
    old = torch.zeros(3, 1)
    new = torch.log(torch.tensor([[1.5], [0.5], [1.05]]))
    adv = torch.tensor([1.0, 1.0, -2.0])
    # rho = 1.5 (A>0): clipped to 1.1; rho = 0.5 (A>0): min(0.5, 0.9) = 0.5; rho = 1.05 (A<0): -2.1
    expect = -(1.1 + 0.5 - 2.1) / 3
    assert float(clipped_surrogate(new, old, adv, 0.1)) == pytest.approx(expect, abs=1e-6)


def test_clipped_surrogate_gradient_vanishes_when_clipped() -> None:
    new = torch.log(torch.tensor([[1.5]])).requires_grad_(True)
    clipped_surrogate(new, torch.zeros(1, 1), torch.tensor([1.0]), 0.1).backward()
    assert new.grad is not None and float(new.grad.abs().sum()) == 0.0
    inside = torch.zeros(1, 1, requires_grad=True)
    clipped_surrogate(inside, torch.zeros(1, 1), torch.tensor([2.0]), 0.1).backward()
    assert inside.grad is not None and float(inside.grad[0, 0]) == pytest.approx(-2.0)


def test_surrogate_mask() -> None:
    lp = torch.zeros(2, 2)
    adv = torch.tensor([1.0, 3.0])
    mask = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    assert float(clipped_surrogate(lp, lp, adv, 0.1, mask)) == pytest.approx(-1.0)


def test_kl_to_reference() -> None:
    z = torch.randn(3, 4, 5)
    assert float(kl_to_reference(z, z)) == pytest.approx(0.0, abs=1e-6)
    assert float(kl_to_reference(z, z + torch.randn(3, 4, 5))) > 0


def _toy_data(n: int = 64) -> TaskData:
    # Answer = the prompt's second token; one reasoning step whose target is irrelevant.
    g = torch.Generator().manual_seed(0)
    prompts = torch.cat([torch.zeros(n, 1, dtype=torch.long), torch.randint(1, 4, (n, 1), generator=g),
                         torch.full((n, 1), 5)], 1)
    traces = torch.full((n, 1), 4)
    return TaskData(prompts, prompts[:, 1].clone(), traces, traces[:, None], torch.ones(n, dtype=torch.long),
                    torch.nn.functional.one_hot(traces, 6).float())


@pytest.mark.parametrize("sampling", ["mts", "dirichlet"])
def test_grpo_increases_reward_on_a_toy_task(sampling: str) -> None:
    torch.manual_seed(0)
    m = CoT2Model(ModelConfig(layers=1, heads=2, dim=16), vocab_size=6, max_len=4)
    cfg = GRPOConfig(sampling=sampling, k=2, group_size=8, prompts_per_step=16, steps=40, lr=1e-2,  # type: ignore[arg-type]
                     inner_epochs=2, kl_coef=0.01, gamma=5.0)
    hist = grpo_train(m, _toy_data(), cfg, torch.Generator().manual_seed(0))
    assert len(hist.reward) == 40
    assert sum(hist.reward[-5:]) / 5 > sum(hist.reward[:5]) / 5 + 0.2
