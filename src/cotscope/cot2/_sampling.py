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


@dataclass
class Rollout:
    """A batch of sampled CoT2 rollouts.

    Attributes:
        prompts: ``(B, P)`` ids.
        fed: ``(B, T, V)`` distributions fed at the reasoning positions.
        actions: ``(B, T, K)`` sampled token ids (MTS) or None (Dirichlet).
        answer: ``(B,)`` sampled answer ids.
        logp: ``(B, T + 1)`` log-probability of each action under the sampling policy.
        log_fed: ``(B, T, V)`` log of the Dirichlet draws (exact even where ``fed`` underflows to 0);
            None for MTS.
    """

    prompts: torch.Tensor
    fed: torch.Tensor
    actions: torch.Tensor | None
    answer: torch.Tensor
    logp: torch.Tensor
    log_fed: torch.Tensor | None = None


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


def dirichlet_log_prob(logits: torch.Tensor, log_alpha_hat: torch.Tensor, gamma: float) -> torch.Tensor:
    """Log-density of alpha-hat under Dir(gamma * softmax(z)): ``(..., V) -> (...)``.

    Takes ``log alpha-hat``: with small concentrations most coordinates of a draw are far below the
    smallest float, and clamping them would bias the log-density (and hence the policy gradient).
    """
    conc = dirichlet_concentration(logits, gamma)
    return ((conc - 1.0) * log_alpha_hat).sum(-1) + torch.lgamma(conc.sum(-1)) - torch.lgamma(conc).sum(-1)


def sample_log_dirichlet(conc: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``log`` of a draw from Dir(conc), computed in log space so that no coordinate underflows.

    Uses Gamma(c) = Gamma(c + 1) * U^(1/c): ``log G = log Gamma(c + 1) + log(U) / c``, then normalises
    with logsumexp.
    """
    g1 = torch._standard_gamma(conc + 1.0) if generator is None else _gamma_with(conc + 1.0, generator)
    u = torch.rand(conc.shape, generator=generator, device=conc.device, dtype=conc.dtype)
    log_g = torch.log(g1) + torch.log(u.clamp_min(torch.finfo(conc.dtype).tiny)) / conc
    return log_g - torch.logsumexp(log_g, -1, keepdim=True)


def _draw_step(
    z: torch.Tensor, sampling: Sampling, k: int, gamma: float, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    """Sample one reasoning step: ``(fed (B, V), actions (B, K) or None, logp (B,), log_fed or None)``."""
    if sampling == "mts":
        acts = torch.multinomial(torch.softmax(z, -1), k, replacement=True, generator=generator)
        fed = F.one_hot(acts, z.shape[-1]).float().mean(1)
        return fed, acts, mts_log_prob(z, acts), None
    # torch's Dirichlet.sample takes no generator and underflows for small concentrations.
    log_a = sample_log_dirichlet(dirichlet_concentration(z, gamma), generator)
    return log_a.exp(), None, dirichlet_log_prob(z, log_a, gamma), log_a


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
    acts, logps, logs = [], [], []
    for _ in range(num_steps):
        z = model.forward_mixed(prompts, fed)[:, -1].float()
        f, a, lp, log_f = _draw_step(z, sampling, k, gamma, generator)
        fed = torch.cat([fed, f[:, None]], 1)
        if a is not None:
            acts.append(a)
        if log_f is not None:
            logs.append(log_f)
        logps.append(lp)
    z = model.forward_mixed(prompts, fed)[:, -1].float()
    if greedy_answer:
        answer = z.argmax(-1)
    else:
        answer = torch.multinomial(torch.softmax(z, -1), 1, generator=generator).squeeze(1)
    logps.append(F.log_softmax(z, -1).gather(-1, answer[:, None]).squeeze(1))
    actions = torch.stack(acts, 1) if acts else None
    log_fed = torch.stack(logs, 1) if logs else None
    return Rollout(prompts, fed, actions, answer, torch.stack(logps, 1), log_fed)


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
        log_fed = rollout.log_fed if rollout.log_fed is not None else torch.log(rollout.fed)
        lp = dirichlet_log_prob(steps, log_fed, gamma)
    ans = F.log_softmax(last, -1).gather(-1, rollout.answer[:, None])
    return torch.cat([lp, ans], 1), logits
