"""GRPO for CoT2 policies: group rollouts, 0/1 rewards, group-normalised advantages, clipped surrogate."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from cotscope.cot2._config import GRPOConfig
from cotscope.cot2._model import CoT2Model
from cotscope.cot2._sampling import rollout_log_probs, sample_rollouts
from cotscope.cot2._tasks import TaskData


def group_advantages(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Group-normalised advantages ``(r - mean) / (std + eps)`` over the last axis.

    Args:
        rewards: ``(num_prompts, group_size)``.
        eps: Stabiliser of the division.

    Returns:
        Advantages of the same shape; exactly 0 for groups whose rewards are all equal (they carry
        no learning signal, and ``eps`` alone would not zero them).
    """
    mean = rewards.mean(-1, keepdim=True)
    std = rewards.std(-1, unbiased=False, keepdim=True)
    adv = (rewards - mean) / (std + eps)
    return torch.where(std > 0, adv, torch.zeros_like(adv))


def clipped_surrogate(
    logp: torch.Tensor,
    logp_old: torch.Tensor,
    advantages: torch.Tensor,
    clip_eps: float = 0.1,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """PPO/GRPO clipped surrogate loss (to minimise).

    ``-mean[min(rho * A, clip(rho, 1 - eps, 1 + eps) * A)]`` with ``rho = exp(logp - logp_old)`` per
    decoding step; ``advantages`` broadcasts over steps.

    Args:
        logp: ``(B, S)`` log-probs under the current policy (with gradient).
        logp_old: ``(B, S)`` log-probs under the sampling policy.
        advantages: ``(B,)`` or ``(B, S)``.
        clip_eps: epsilon.
        mask: Optional ``(B, S)`` weights of valid steps.
    """
    adv = advantages if advantages.dim() == logp.dim() else advantages[:, None]
    ratio = torch.exp(logp - logp_old)
    obj = torch.minimum(ratio * adv, ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * adv)
    if mask is None:
        return -obj.mean()
    return -(obj * mask).sum() / mask.sum().clamp_min(1.0)


def kl_to_reference(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """Mean over positions of the exact KL(pi || pi_ref) between the two softmax distributions."""
    logp = torch.log_softmax(logits.float(), -1)
    logr = torch.log_softmax(ref_logits.float(), -1)
    return (logp.exp() * (logp - logr)).sum(-1).mean()


@dataclass
class GRPOHistory:
    """Per-step GRPO statistics."""

    reward: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    zero_var_frac: list[float] = field(default_factory=list)


def grpo_train(
    model: CoT2Model,
    data: TaskData,
    cfg: GRPOConfig,
    generator: torch.Generator | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> GRPOHistory:
    """Fine-tune ``model`` in place with GRPO.

    Each step draws ``prompts_per_step`` prompts, samples ``group_size`` rollouts of each in one batch,
    rewards a correct answer with 1, and takes ``inner_epochs`` Adam steps on the clipped surrogate
    (plus ``kl_coef`` times the KL to the frozen initial model). The per-step ratio is the one of
    ``cfg.mts_ratio`` / ``cfg.dirichlet`` (see :mod:`cotscope.cot2._sampling`); the surrogate is averaged
    over (rollout, step), as the official ``rollout_grpo_batch`` divides by rollouts x steps x prompts.

    Args:
        model: The policy (an SFT checkpoint), on the device of ``data``.
        data: Training prompts and answers.
        cfg: GRPO settings.
        generator: RNG for prompt choice and sampling.
        on_step: Called with ``(step, mean reward)`` after each step.
    """
    ref = copy.deepcopy(model).eval().requires_grad_(False) if cfg.kl_coef > 0 else None
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    hist = GRPOHistory()
    g, n = cfg.group_size, len(data)
    dev = data.prompts.device
    for step in range(cfg.steps):
        # The generator must live on the data's device (CUDA sampling rejects a CPU generator).
        idx = torch.randint(0, n, (cfg.prompts_per_step,), generator=generator, device=dev)
        prompts = data.prompts[idx].repeat_interleave(g, 0)
        answers = data.answers[idx].repeat_interleave(g, 0)
        model.eval()
        ro = sample_rollouts(model, prompts, data.num_steps, cfg.sampling, cfg.k, cfg.gamma, generator,
                             mts_ratio=cfg.mts_ratio, dirichlet=cfg.dirichlet)
        rewards = (ro.answer == answers).float().view(-1, g)
        std = rewards.std(-1, unbiased=False)
        adv = group_advantages(rewards).reshape(-1)
        model.train()
        loss_v = kl_v = 0.0
        if bool((std > 0).any()):
            for _ in range(cfg.inner_epochs):
                logp, logits = rollout_log_probs(model, ro, cfg.sampling, cfg.gamma, cfg.mts_ratio)
                loss = clipped_surrogate(logp, ro.logp, adv, cfg.clip_eps)
                if ref is not None:
                    with torch.no_grad():
                        ref_logits = ref.forward_mixed(ro.prompts, ro.fed)
                    kl = kl_to_reference(logits, ref_logits)
                    loss = loss + cfg.kl_coef * kl
                    kl_v = float(kl.detach())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                loss_v = float(loss.detach())
        hist.reward.append(float(rewards.mean()))
        hist.loss.append(loss_v)
        hist.kl.append(kl_v)
        hist.zero_var_frac.append(float((std == 0).float().mean()))
        if on_step is not None:
            on_step(step, hist.reward[-1])
    model.eval()
    return hist
