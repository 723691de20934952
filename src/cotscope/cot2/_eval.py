"""Evaluation of CoT2 and discrete models: accuracy, per-step entropy, pass@k, sampled-policy accuracy."""

from __future__ import annotations

from typing import Any

import torch

from cotscope.cot2._discrete import decode_discrete, pass_at_k_curve
from cotscope.cot2._model import CoT2Model
from cotscope.cot2._sampling import DirichletForm, MTSRatio, Sampling, decode_continuous, sample_rollouts
from cotscope.cot2._tasks import TaskData


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(s, min(n, s + size)) for s in range(0, n, size)]


@torch.no_grad()
def eval_continuous(model: CoT2Model, data: TaskData, chunk: int = 4096) -> dict[str, Any]:
    """CoT2 accuracy: self-feed the softmax, score the argmax answer.

    Returns:
        ``{"accuracy", "per_step_entropy"}`` (entropy in nats of alpha_t, mean over examples).
    """
    model.eval()
    hits, ents = [], []
    for sl in _chunks(len(data), chunk):
        _, ans, ent = decode_continuous(model, data.prompts[sl], data.num_steps)
        hits.append(ans == data.answers[sl])
        ents.append(ent * (sl.stop - sl.start))
    return {
        "accuracy": float(torch.cat(hits).float().mean()),
        "per_step_entropy": (torch.stack(ents).sum(0) / len(data)).tolist(),
    }


@torch.no_grad()
def eval_greedy(model: CoT2Model, data: TaskData, chunk: int = 4096) -> dict[str, Any]:
    """Discrete CoT accuracy with greedy (argmax) decoding, and the per-step softmax entropy."""
    model.eval()
    hits, ents = [], []
    for sl in _chunks(len(data), chunk):
        _, ans, ent = decode_discrete(model, data.prompts[sl], data.num_steps, greedy=True)
        hits.append(ans == data.answers[sl])
        ents.append(ent * (sl.stop - sl.start))
    return {
        "accuracy": float(torch.cat(hits).float().mean()),
        "per_step_entropy": (torch.stack(ents).sum(0) / len(data)).tolist(),
    }


@torch.no_grad()
def eval_pass_at_k(
    model: CoT2Model, data: TaskData, n: int, generator: torch.Generator | None = None
) -> dict[int, float]:
    """Discrete pass@k for k = 1..n (temperature-1 sampling of every token)."""
    model.eval()
    return pass_at_k_curve(model, data.prompts, data.answers, data.num_steps, n, generator)


@torch.no_grad()
def eval_sampling(
    model: CoT2Model,
    data: TaskData,
    sampling: Sampling,
    k: int,
    gamma: float,
    samples: int,
    generator: torch.Generator | None = None,
    chunk: int = 4096,
    mts_ratio: MTSRatio = "geometric",
    dirichlet: DirichletForm = "scaled",
) -> float:
    """Mean accuracy of single rollouts of a sampling policy (MTS or Dirichlet steps, argmax answer).

    The official MTS form samples its K tokens from softmax(z / K) here too, as the official evaluation
    ``grpo_eval_soft_steps_acc`` (``train/continuous_train_grpo_mts.py``) does.
    """
    model.eval()
    rep = data.prompts.repeat_interleave(samples, 0)
    ans = data.answers.repeat_interleave(samples, 0)
    hits = []
    for sl in _chunks(rep.shape[0], chunk):
        ro = sample_rollouts(
            model, rep[sl], data.num_steps, sampling, k, gamma, generator, greedy_answer=True,
            mts_ratio=mts_ratio, dirichlet=dirichlet,
        )
        hits.append(ro.answer == ans[sl])
    return float(torch.cat(hits).float().mean())
