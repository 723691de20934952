"""Continuous supervised fine-tuning (CSFT): KL to alpha*_t at every reasoning step plus answer CE."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from cotscope.cot2._model import CoT2Model


@dataclass
class CSFTLoss:
    """The CSFT objective and its parts (batch means).

    Attributes:
        total: ``kl + ce``, the quantity to minimise.
        kl: Sum over reasoning steps of KL(alpha*_t || softmax(z_t)).
        ce: Cross-entropy of the final answer.
    """

    total: torch.Tensor
    kl: torch.Tensor
    ce: torch.Tensor


def csft_loss(
    step_logits: torch.Tensor, answer_logits: torch.Tensor, targets: torch.Tensor, answers: torch.Tensor
) -> CSFTLoss:
    """CSFT loss for one batch.

    Args:
        step_logits: ``(B, T, V)`` logits z_t at the positions predicting reasoning steps.
        answer_logits: ``(B, V)`` logits at the position predicting the answer.
        targets: ``(B, T, V)`` target distributions alpha*_t.
        answers: ``(B,)`` answer ids.

    Returns:
        The loss; with one-hot targets the KL term is the discrete CoT cross-entropy.
    """
    logq = F.log_softmax(step_logits.float(), dim=-1)
    # xlogy gives 0 * log 0 = 0 for the (many) zero entries of alpha*.
    kl = (torch.xlogy(targets, targets) - targets * logq).sum(dim=(1, 2)).mean()
    ce = F.cross_entropy(answer_logits.float(), answers)
    return CSFTLoss(kl + ce, kl, ce)


def teacher_forced_logits(
    model: CoT2Model, prompts: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One parallel forward pass feeding ``E^T alpha*_t`` at every reasoning step.

    Returns:
        ``(step_logits (B, T, V), answer_logits (B, V))``.
    """
    logits = model.forward_mixed(prompts, targets)
    return logits[:, :-1], logits[:, -1]


def fed_logits(
    model: CoT2Model,
    prompts: torch.Tensor,
    targets: torch.Tensor,
    teacher_prob: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Autoregressive forward where each example feeds alpha*_t with ``teacher_prob`` else its own softmax.

    ``teacher_prob = 0`` is pure self-feeding; values in between implement the curriculum. Gradients
    flow through the fed softmax, so the model learns what its own continuous tokens lead to.

    Returns:
        ``(step_logits (B, T, V), answer_logits (B, V))``.
    """
    if teacher_prob >= 1.0:
        return teacher_forced_logits(model, prompts, targets)
    b, t, _ = targets.shape
    fed: list[torch.Tensor] = []
    step_logits: list[torch.Tensor] = []
    for i in range(t + 1):
        steps = torch.stack(fed, 1) if fed else targets[:, :0]
        z = model.forward_mixed(prompts, steps)[:, -1]
        if i == t:
            return torch.stack(step_logits, 1), z
        step_logits.append(z)
        own = torch.softmax(z, dim=-1)
        if teacher_prob > 0.0:
            u = torch.rand(b, 1, device=prompts.device, generator=generator)
            own = torch.where(u < teacher_prob, targets[:, i], own)
        fed.append(own)
    raise AssertionError("unreachable")
