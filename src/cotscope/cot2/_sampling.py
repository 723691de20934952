"""CoT2 decoding and the two sampling schemes that make CoT2 a stochastic policy for RL.

* Continuous decoding feeds the full softmax alpha_t = softmax(z_t) back (deterministic).
* Multi-token sampling (MTS) draws K tokens i.i.d. and feeds the mean of their embeddings, i.e. E^T of
  the empirical distribution of the K draws. K = 1 is discrete CoT. Two policy-ratio forms
  (:data:`MTSRatio`):

  - ``geometric`` (the paper's definition, the default): tokens from softmax(z_t); the step's ratio is
    the geometric mean of the K per-token ratios, ``prod_k (pi(i_k) / pi_old(i_k))^(1/K)``. The full
    product would be its K-th power, which narrows the effective clip range to (1 +- eps)^(1/K) and
    scales the gradient by K.
  - ``official``: the official code's default (``rollout_grpo_batch`` in
    ``train/continuous_train_grpo_mts.py`` of github.com/alperengozeten/CoT2, with
    ``sampling_normalization=true``): tokens from softmax(z_t / K), ratio = the product of the K
    per-token ratios under that tempered softmax. With ``sampling_normalization=false`` the same
    function computes the geometric form above.

  The multinomial coefficient of the K draws is the same under every policy and cancels in ratios.
* Dirichlet sampling draws alpha-hat from a Dirichlet around alpha_t and feeds E^T alpha-hat; the step's
  ratio is the density ratio. Two forms (:data:`DirichletForm`): ``scaled``, Dir(gamma * alpha_t + 1e-3)
  over the whole vocabulary, and ``official`` (``rollout_grpo_batch`` in
  ``train/continuous_train_grpo_dirichlet.py``): scale 1 over the support {i : alpha_t[i] >= 1e-3},
  those probabilities clamped to >= 1e-3 and renormalised.

The final answer is always one discrete token drawn from softmax(z) (untempered, as in the official
code). Every rollout function works on a whole batch at once (group rollouts are rows of the batch),
looping only over the T + 1 decoding positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch.nn import functional as F

from cotscope.cot2._model import CoT2Model

Sampling = Literal["mts", "dirichlet"]
#: MTS policy-ratio form: ``geometric`` (paper) or ``official`` (official code's default).
MTSRatio = Literal["geometric", "official"]
#: Dirichlet form: ``scaled`` (gamma * alpha + floor, whole vocabulary) or ``official`` (scale 1, support).
DirichletForm = Literal["scaled", "official"]

#: Added to Dirichlet concentrations: gamma * softmax underflows for unlikely tokens and Dir(0) is
#: undefined.
DIRICHLET_FLOOR = 1e-3
#: The official Dirichlet keeps tokens with probability >= this and clamps them up to it
#: (``MIN_PROB`` in ``train/continuous_train_grpo_dirichlet.py``).
OFFICIAL_MIN_PROB = 1e-3


@dataclass
class Rollout:
    """A batch of sampled CoT2 rollouts.

    Attributes:
        prompts: ``(B, P)`` ids.
        fed: ``(B, T, V)`` distributions fed at the reasoning positions.
        actions: ``(B, T, K)`` sampled token ids (MTS) or None (Dirichlet).
        answer: ``(B,)`` sampled answer ids.
        logp: ``(B, T + 1)`` per-step log term under the sampling policy whose difference between two
            policies is the log policy ratio of the step (for geometric MTS this is the mean, not the
            sum, of the K token log-probabilities).
        log_fed: ``(B, T, V)`` log of the Dirichlet draws (exact even where ``fed`` underflows to 0);
            None for MTS.
        support: ``(B, T, V)`` boolean support of the official Dirichlet form, fixed at sampling time;
            None otherwise.
    """

    prompts: torch.Tensor
    fed: torch.Tensor
    actions: torch.Tensor | None
    answer: torch.Tensor
    logp: torch.Tensor
    log_fed: torch.Tensor | None = None
    support: torch.Tensor | None = None


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


def mts_temperature(k: int, ratio: MTSRatio) -> float:
    """Softmax temperature MTS draws its K tokens at: K for the official form, 1 for the paper's."""
    return float(k) if ratio == "official" else 1.0


def mts_log_prob(logits: torch.Tensor, actions: torch.Tensor, ratio: MTSRatio = "geometric") -> torch.Tensor:
    """Per-step log term of multi-token sampling, whose difference is the log policy ratio.

    * ``geometric`` (paper): ``mean_k log softmax(z)[i_k]``, so that ``exp(new - old)`` is the geometric
      mean of the K per-token ratios.
    * ``official`` (``train/continuous_train_grpo_mts.py``, ``sampling_normalization=true``):
      ``sum_k log softmax(z / K)[i_k]``, so that ``exp(new - old)`` is the product of the K per-token
      ratios under the tempered softmax.

    Args:
        logits: ``(..., V)``.
        actions: ``(..., K)`` token ids.
        ratio: The ratio form.
    """
    k = actions.shape[-1]
    logq = F.log_softmax(logits.float() / mts_temperature(k, ratio), -1).gather(-1, actions)
    return logq.sum(-1) if ratio == "official" else logq.mean(-1)


def dirichlet_concentration(logits: torch.Tensor, gamma: float) -> torch.Tensor:
    """``gamma * softmax(z) + floor``: the Dirichlet parameter of a step (``scaled`` form)."""
    return gamma * torch.softmax(logits.float(), -1) + DIRICHLET_FLOOR


def official_dirichlet_support(logits: torch.Tensor) -> torch.Tensor:
    """Tokens the official Dirichlet keeps: ``softmax(z) >= 1e-3`` (boolean, same shape as ``logits``)."""
    return torch.softmax(logits.float(), -1) >= OFFICIAL_MIN_PROB


def official_dirichlet_concentration(logits: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """The official Dirichlet parameter on ``support``, 0 elsewhere.

    ``softmax(z)`` restricted to ``support``, clamped to >= 1e-3, renormalised to sum 1, times the scale
    1 (``DIRICHLET_SCALE`` in ``train/continuous_train_grpo_dirichlet.py``).
    """
    p = torch.softmax(logits.float(), -1).clamp_min(OFFICIAL_MIN_PROB)
    p = torch.where(support, p, torch.zeros_like(p))
    return p / p.sum(-1, keepdim=True)


def dirichlet_log_prob(
    logits: torch.Tensor, log_alpha_hat: torch.Tensor, gamma: float, support: torch.Tensor | None = None
) -> torch.Tensor:
    """Log-density of alpha-hat: ``(..., V) -> (...)``.

    Without ``support``: under Dir(gamma * softmax(z) + 1e-3) over the whole vocabulary (``scaled``).
    With ``support``: under the official form on that face of the simplex (coordinates outside it are
    ignored; ``gamma`` is not used).

    Takes ``log alpha-hat``: with small concentrations most coordinates of a draw are far below the
    smallest float, and clamping them would bias the log-density (and hence the policy gradient).
    """
    if support is None:
        conc = dirichlet_concentration(logits, gamma)
        return (
            ((conc - 1.0) * log_alpha_hat).sum(-1) + torch.lgamma(conc.sum(-1)) - torch.lgamma(conc).sum(-1)
        )
    conc = official_dirichlet_concentration(logits, support)
    safe = torch.where(support, conc, torch.ones_like(conc))  # lgamma(1) = 0 off the support
    # Zero log alpha-hat off the support *before* multiplying: it is -inf there, and a masked -inf
    # still sends 0 * inf = NaN into the gradient through torch.where.
    log_a = torch.where(support, log_alpha_hat, torch.zeros_like(log_alpha_hat))
    term = torch.where(support, (conc - 1.0) * log_a, torch.zeros_like(conc))
    return term.sum(-1) + torch.lgamma(conc.sum(-1)) - torch.lgamma(safe).sum(-1)


def sample_log_dirichlet(
    conc: torch.Tensor, generator: torch.Generator | None = None, support: torch.Tensor | None = None
) -> torch.Tensor:
    """``log`` of a draw from Dir(conc), computed in log space so that no coordinate underflows.

    Uses Gamma(c) = Gamma(c + 1) * U^(1/c): ``log G = log Gamma(c + 1) + log(U) / c``, then normalises
    with logsumexp. With ``support``, only those coordinates are drawn (the others are ``-inf``).
    """
    if support is not None:
        conc = torch.where(support, conc, torch.ones_like(conc))  # placeholder, masked out below
    g1 = torch._standard_gamma(conc + 1.0) if generator is None else _gamma_with(conc + 1.0, generator)
    u = torch.rand(conc.shape, generator=generator, device=conc.device, dtype=conc.dtype)
    log_g = torch.log(g1) + torch.log(u.clamp_min(torch.finfo(conc.dtype).tiny)) / conc
    if support is not None:
        log_g = torch.where(support, log_g, torch.full_like(log_g, float("-inf")))
    return log_g - torch.logsumexp(log_g, -1, keepdim=True)


@dataclass
class _Step:
    fed: torch.Tensor
    actions: torch.Tensor | None
    logp: torch.Tensor
    log_fed: torch.Tensor | None
    support: torch.Tensor | None


def _draw_step(
    z: torch.Tensor,
    sampling: Sampling,
    k: int,
    gamma: float,
    generator: torch.Generator | None,
    mts_ratio: MTSRatio,
    dirichlet: DirichletForm,
) -> _Step:
    """Sample one reasoning step for a batch of logits ``z`` ``(B, V)``."""
    if sampling == "mts":
        probs = torch.softmax(z / mts_temperature(k, mts_ratio), -1)
        acts = torch.multinomial(probs, k, replacement=True, generator=generator)
        fed = F.one_hot(acts, z.shape[-1]).float().mean(1)
        return _Step(fed, acts, mts_log_prob(z, acts, mts_ratio), None, None)
    # torch's Dirichlet.sample takes no generator and underflows for small concentrations.
    if dirichlet == "official":
        # The official code takes the union of the current and the old policy's supports; at sampling
        # time the two policies are the same, so the union is this support, and it stays fixed for
        # the ratio (both densities must live on the same face of the simplex).
        sup = official_dirichlet_support(z)
        log_a = sample_log_dirichlet(official_dirichlet_concentration(z, sup), generator, sup)
        return _Step(log_a.exp(), None, dirichlet_log_prob(z, log_a, gamma, sup), log_a, sup)
    log_a = sample_log_dirichlet(dirichlet_concentration(z, gamma), generator)
    return _Step(log_a.exp(), None, dirichlet_log_prob(z, log_a, gamma), log_a, None)


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
    mts_ratio: MTSRatio = "geometric",
    dirichlet: DirichletForm = "scaled",
) -> Rollout:
    """Sample a batch of CoT2 rollouts (one per row of ``prompts``).

    Args:
        model: The policy.
        prompts: ``(B, P)``; repeat rows to get a group of rollouts per prompt.
        num_steps: Reasoning steps T.
        sampling: ``mts`` or ``dirichlet``.
        k: Tokens per step for MTS.
        gamma: Dirichlet scale (``scaled`` form).
        generator: RNG.
        greedy_answer: Take the argmax answer instead of sampling it (evaluation).
        mts_ratio: MTS ratio form; ``official`` also samples the K tokens from softmax(z / K).
        dirichlet: Dirichlet form.
    """
    b = prompts.shape[0]
    fed = torch.zeros(b, 0, model.vocab_size, device=prompts.device)
    acts, logps, logs, sups = [], [], [], []
    for _ in range(num_steps):
        z = model.forward_mixed(prompts, fed)[:, -1].float()
        st = _draw_step(z, sampling, k, gamma, generator, mts_ratio, dirichlet)
        fed = torch.cat([fed, st.fed[:, None]], 1)
        if st.actions is not None:
            acts.append(st.actions)
        if st.log_fed is not None:
            logs.append(st.log_fed)
        if st.support is not None:
            sups.append(st.support)
        logps.append(st.logp)
    z = model.forward_mixed(prompts, fed)[:, -1].float()
    if greedy_answer:
        answer = z.argmax(-1)
    else:
        answer = torch.multinomial(torch.softmax(z, -1), 1, generator=generator).squeeze(1)
    logps.append(F.log_softmax(z, -1).gather(-1, answer[:, None]).squeeze(1))

    def stack(xs: list[torch.Tensor]) -> torch.Tensor | None:
        return torch.stack(xs, 1) if xs else None

    return Rollout(prompts, fed, stack(acts), answer, torch.stack(logps, 1), stack(logs), stack(sups))


def rollout_log_probs(
    model: CoT2Model,
    rollout: Rollout,
    sampling: Sampling,
    gamma: float = 20.0,
    mts_ratio: MTSRatio = "geometric",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-step log terms of a rollout's actions under ``model`` in one parallel forward pass.

    The fed inputs are fixed by the actions, so the whole trajectory is teacher-forced at once. The
    Dirichlet form follows the rollout (official when it carries a support).

    Returns:
        ``(logp (B, T + 1), logits (B, T + 1, V))``; gradients flow to the model.
    """
    logits = model.forward_mixed(rollout.prompts, rollout.fed).float()
    steps, last = logits[:, :-1], logits[:, -1]
    if sampling == "mts":
        assert rollout.actions is not None
        lp = mts_log_prob(steps, rollout.actions, mts_ratio)
    else:
        log_fed = rollout.log_fed if rollout.log_fed is not None else torch.log(rollout.fed)
        lp = dirichlet_log_prob(steps, log_fed, gamma, rollout.support)
    ans = F.log_softmax(last, -1).gather(-1, rollout.answer[:, None])
    return torch.cat([lp, ans], 1), logits
