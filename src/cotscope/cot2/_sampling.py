"""CoT2 decoding and the two sampling schemes that make CoT2 a stochastic policy for RL.

* Continuous decoding feeds the full softmax alpha_t = softmax(z_t) back (deterministic).
* Multi-token sampling (MTS) draws K tokens i.i.d. from softmax(z_t) and feeds the mean of their
  embeddings, i.e. E^T of the empirical distribution of the K draws. K = 1 is discrete CoT. The policy
  probability of a step is the product of the K token probabilities (the multinomial coefficient is
  the same under every policy, so it cancels in ratios and is left out).
* Dirichlet sampling draws alpha-hat ~ Dir(gamma * alpha_t) and feeds E^T alpha-hat; the policy
  probability of a step is the Dirichlet density at alpha-hat.

The final answer is always one discrete token. Every rollout function works on a whole batch at once
(group rollouts are rows of the batch), looping only over the T + 1 decoding positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch.nn import functional as F

from cotscope.cot2._model import CoT2Model

Sampling = Literal["mts", "dirichlet"]

#: Added to Dirichlet concentrations: gamma * softmax underflows for unlikely tokens and Dir(0) is
#: undefined.
DIRICHLET_FLOOR = 1e-3
#: Dirichlet draws are clamped away from 0 so that their log-density stays finite.
SIMPLEX_EPS = 1e-20


@dataclass
class Rollout:
    """A batch of sampled CoT2 rollouts.

    Attributes:
        prompts: ``(B, P)`` ids.
        fed: ``(B, T, V)`` distributions fed at the reasoning positions.
        actions: ``(B, T, K)`` sampled token ids (MTS) or None (Dirichlet, whose action is ``fed``).
        answer: ``(B,)`` sampled answer ids.
        logp: ``(B, T + 1)`` log-probability of each action under the sampling policy.
    """

    prompts: torch.Tensor
    fed: torch.Tensor
    actions: torch.Tensor | None
    answer: torch.Tensor
    logp: torch.Tensor


@torch.no_grad()
def decode_continuous(
    model: CoT2Model, prompts: torch.Tensor, num_steps: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CoT2 inference: self-feed softmax(z_t) for T steps, then take the argmax answer.

    Returns:
        ``(fed (B, T, V), answer (B,), entropy (T,))`` with mean entropy of alpha_t per step.
    """
    fed = torch.zeros(prompts.shape[0], 0, model.vocab_size, device=prompts.device)
    for _ in range(num_steps):
        z = model.forward_mixed(prompts, fed)[:, -1].float()
        fed = torch.cat([fed, torch.softmax(z, -1)[:, None]], 1)
    answer = model.forward_mixed(prompts, fed)[:, -1].argmax(-1)
    ent = -(torch.xlogy(fed, fed)).sum(-1).mean(0)
    return fed, answer, ent


def mts_log_prob(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Multi-token-sampling log-probability: ``sum_k log softmax(z)[i_k]``.

    Args:
        logits: ``(..., V)``.
        actions: ``(..., K)`` token ids.
    """
    return F.log_softmax(logits.float(), -1).gather(-1, actions).sum(-1)


def dirichlet_concentration(logits: torch.Tensor, gamma: float) -> torch.Tensor:
    """``gamma * softmax(z) + floor``: the Dirichlet parameter of a step."""
    return gamma * torch.softmax(logits.float(), -1) + DIRICHLET_FLOOR


def dirichlet_log_prob(logits: torch.Tensor, alpha_hat: torch.Tensor, gamma: float) -> torch.Tensor:
    """Log-density of ``alpha_hat`` under Dir(gamma * softmax(z)): ``(..., V) -> (...)``."""
    conc = dirichlet_concentration(logits, gamma)
    return (
        torch.xlogy(conc - 1.0, alpha_hat).sum(-1) + torch.lgamma(conc.sum(-1)) - torch.lgamma(conc).sum(-1)
    )


def _draw_step(
    z: torch.Tensor, sampling: Sampling, k: int, gamma: float, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Sample one reasoning step: ``(fed (B, V), actions (B, K) or None, logp (B,))``."""
    if sampling == "mts":
        acts = torch.multinomial(torch.softmax(z, -1), k, replacement=True, generator=generator)
        fed = F.one_hot(acts, z.shape[-1]).float().mean(1)
        return fed, acts, mts_log_prob(z, acts)
    conc = dirichlet_concentration(z, gamma)
    # Dirichlet via normalised Gamma draws; torch's Dirichlet.sample takes no generator.
    g = torch._standard_gamma(conc) if generator is None else _gamma_with(conc, generator)
    g = g.clamp_min(SIMPLEX_EPS)
    alpha_hat = g / g.sum(-1, keepdim=True)
    return alpha_hat, None, dirichlet_log_prob(z, alpha_hat, gamma)


def _gamma_with(conc: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    # Reseed the global stream from the caller's generator so seeded runs are reproducible.
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
    with torch.random.fork_rng(devices=[conc.device] if conc.is_cuda else []):
        torch.manual_seed(seed)
        return torch._standard_gamma(conc)


@torch.no_grad()
def sample_rollouts(
    model: CoT2Model,
    prompts: torch.Tensor,
    num_steps: int,
    sampling: Sampling = "mts",
    k: int = 1,
    gamma: float = 20.0,
    generator: torch.Generator | None = None,
    greedy_answer: bool = False,
) -> Rollout:
    """Sample a batch of CoT2 rollouts (one per row of ``prompts``).

    Args:
        model: The policy.
        prompts: ``(B, P)``; repeat rows to get a group of rollouts per prompt.
        num_steps: Reasoning steps T.
        sampling: ``mts`` or ``dirichlet``.
        k: Tokens per step for MTS.
        gamma: Dirichlet scale.
        generator: RNG.
        greedy_answer: Take the argmax answer instead of sampling it (evaluation).
    """
    b = prompts.shape[0]
    fed = torch.zeros(b, 0, model.vocab_size, device=prompts.device)
    acts, logps = [], []
    for _ in range(num_steps):
        z = model.forward_mixed(prompts, fed)[:, -1].float()
        f, a, lp = _draw_step(z, sampling, k, gamma, generator)
        fed = torch.cat([fed, f[:, None]], 1)
        if a is not None:
            acts.append(a)
        logps.append(lp)
    z = model.forward_mixed(prompts, fed)[:, -1].float()
    if greedy_answer:
        answer = z.argmax(-1)
    else:
        answer = torch.multinomial(torch.softmax(z, -1), 1, generator=generator).squeeze(1)
    logps.append(F.log_softmax(z, -1).gather(-1, answer[:, None]).squeeze(1))
    actions = torch.stack(acts, 1) if acts else None
    return Rollout(prompts, fed, actions, answer, torch.stack(logps, 1))


def rollout_log_probs(
    model: CoT2Model, rollout: Rollout, sampling: Sampling, gamma: float = 20.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of a rollout's actions under ``model`` in one parallel forward pass.

    The fed inputs are fixed by the actions, so the whole trajectory is teacher-forced at once.

    Returns:
        ``(logp (B, T + 1), logits (B, T + 1, V))``; gradients flow to the model.
    """
    logits = model.forward_mixed(rollout.prompts, rollout.fed).float()
    steps, last = logits[:, :-1], logits[:, -1]
    if sampling == "mts":
        assert rollout.actions is not None
        lp = mts_log_prob(steps, rollout.actions)
    else:
        lp = dirichlet_log_prob(steps, rollout.fed, gamma)
    ans = F.log_softmax(last, -1).gather(-1, rollout.answer[:, None])
    return torch.cat([lp, ans], 1), logits
