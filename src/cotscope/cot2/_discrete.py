"""Discrete CoT decoding (greedy and sampled) and the pass@k estimator."""

from __future__ import annotations

from math import comb

import torch
from torch.nn import functional as F

from cotscope.cot2._model import CoT2Model


@torch.no_grad()
def decode_discrete(
    model: CoT2Model,
    prompts: torch.Tensor,
    num_steps: int,
    greedy: bool = True,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Discrete chain of thought: one token per reasoning step, then the answer.

    Args:
        model: The decoder.
        prompts: ``(B, P)`` ids.
        num_steps: Reasoning steps T.
        greedy: Argmax tokens; otherwise sample at ``temperature`` (answer included).
        generator: RNG for sampling.
        temperature: Softmax temperature when sampling.

    Returns:
        ``(trace (B, T), answer (B,), entropy (T,))`` with the mean softmax entropy per reasoning step.
    """
    v = model.vocab_size
    fed = torch.zeros(prompts.shape[0], 0, v, device=prompts.device)
    toks: list[torch.Tensor] = []
    ents: list[torch.Tensor] = []
    for i in range(num_steps + 1):
        z = model.forward_mixed(prompts, fed)[:, -1].float()
        if greedy:
            tok = z.argmax(-1)
        else:
            tok = torch.multinomial(torch.softmax(z / temperature, -1), 1, generator=generator).squeeze(1)
        if i == num_steps:
            return torch.stack(toks, 1) if toks else tok[:, :0], tok, torch.stack(ents) if ents else z[0, :0]
        p = torch.softmax(z, -1)
        ents.append(-(torch.xlogy(p, p)).sum(-1).mean())
        toks.append(tok)
        fed = torch.cat([fed, F.one_hot(tok, v).float()[:, None]], 1)
    raise AssertionError("unreachable")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n - c, k) / C(n, k)."""
    if k > n:
        raise ValueError(f"k={k} > n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


@torch.no_grad()
def pass_at_k_curve(
    model: CoT2Model,
    prompts: torch.Tensor,
    answers: torch.Tensor,
    num_steps: int,
    n: int,
    generator: torch.Generator | None = None,
    chunk: int = 4096,
) -> dict[int, float]:
    """pass@k for k = 1..n from n sampled discrete rollouts per prompt (all rollouts batched).

    Returns:
        ``{k: mean pass@k over prompts}``.
    """
    rep = prompts.repeat_interleave(n, 0)
    ans = answers.repeat_interleave(n, 0)
    hits = []
    for s in range(0, rep.shape[0], chunk):
        _, a, _ = decode_discrete(model, rep[s : s + chunk], num_steps, greedy=False, generator=generator)
        hits.append((a == ans[s : s + chunk]).cpu())
    correct = torch.cat(hits).view(-1, n).sum(1)
    return {k: sum(pass_at_k(n, int(c), k) for c in correct) / len(correct) for k in range(1, n + 1)}
