"""Best-of-N selection over a pool of sampled solutions: a PRM's pick against majority vote, random and oracle.

A pool holds, for each problem, the sampled solutions with their answer, whether it is correct and (for PRM
selection) its step scores. For each N, each method picks one solution out of N and the accuracy is the fraction
of problems whose pick is correct.

Two forms:

- ``"resampled"`` (default): N solutions are drawn from each problem's samples without replacement, many times,
  and the accuracy is the mean over problems and draws. For the PRM rules, the random pick and the oracle the
  mean over *all* draws is computed exactly (the limit of infinitely many resamples; see :func:`_prm_exact`),
  so no Monte-Carlo noise enters; majority vote has no closed form and is estimated from ``resamples`` draws per
  problem (exact for N <= 2, where it is a random pick, and for N equal to the number of samples). The confidence
  interval is a percentile bootstrap over problems (``resamples`` bootstrap replicates of the problem set, the same
  replicates for every row, so rows are comparable): it says how much the figure would move with another set of
  problems drawn like these.
- ``"paper"``: URSA's figure (``inference_dataset`` of ``inference/prm_infer_score.py``): the first N samples of
  each problem, one pick, no interval.

Picks, in both forms:

- ``prm:<rule>``: the sample with the highest aggregated score (:func:`cotscope.verify._aggregate.aggregate`);
  ties go to the first drawn (in the paper form the lowest index, as ``torch.max`` does);
- ``majority``: the most frequent answer by :func:`normalize_answer` (self-consistency); ties between answers go
  to the answer drawn first, which for a random draw is a uniform choice among the tied answers; the pick is that
  answer's first drawn sample; blank answers do not vote unless every drawn answer is blank;
- ``random``: a uniform pick among the N; its accuracy is reported as its expectation, the fraction correct among
  the N (the same mean without the pick's noise);
- ``oracle``: correct when any of the N is (pass@N), the ceiling of every selector.

N larger than a problem's number of samples is an error (:class:`~cotscope.errors.DataError`) naming the
problem: a pool's problems must all have at least N samples, so that every row averages the same problems.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from cotscope.errors import ConfigError, DataError
from cotscope.verify._aggregate import RULES, Rule
from cotscope.verify._answers import normalize_answer

__all__ = ["BASELINES", "BestOfNRow", "Form", "Pool", "Sample", "best_of_n"]

#: The selectors that need no PRM, in a fixed order.
BASELINES = ("majority", "random", "oracle")
Form = Literal["resampled", "paper"]


@dataclass
class Sample:
    """One sampled solution of a problem.

    Attributes:
        answer: its final answer (the majority-vote key is :func:`normalize_answer` of it).
        correct: whether the answer is right.
        step_scores: the PRM's score of each step, each in [0, 1]; needed for PRM selection only.
    """

    answer: str
    correct: bool
    step_scores: list[float] | None = None


#: Problems x samples.
Pool = Sequence[Sequence[Sample]]


@dataclass(frozen=True)
class BestOfNRow:
    """The accuracy of one selection method at one N.

    Attributes:
        n: how many samples the method chose from.
        method: ``prm:<rule>``, ``majority``, ``random`` or ``oracle``.
        accuracy: the fraction of problems whose pick is correct, in [0, 1].
        ci_low: the interval's lower end (resampled form; None in the paper form).
        ci_high: the interval's upper end (resampled form; None in the paper form).
        problems: how many problems the figure averages.
        resamples: bootstrap replicates and majority-vote draws per problem (0 in the paper form).
    """

    n: int
    method: str
    accuracy: float
    ci_low: float | None
    ci_high: float | None
    problems: int
    resamples: int


def best_of_n(
    pool: Pool,
    ns: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
    rules: Sequence[Rule] = ("min", "mean", "last", "product"),
    baselines: Sequence[str] = ("majority", "random"),
    resamples: int = 1000,
    seed: int = 0,
    form: Form = "resampled",
    *,
    confidence: float = 0.95,
) -> list[BestOfNRow]:
    """Best-of-N accuracy of PRM selection and the baselines at every N (see the module docstring).

    Args:
        pool: problems x samples.
        ns: the values of N, each at least 1 and at most every problem's number of samples.
        rules: the PRM aggregation rules to select by (empty: baselines only, and no step scores are needed).
        baselines: any of ``majority``, ``random``, ``oracle``.
        resamples: bootstrap replicates and majority-vote draws per problem (resampled form).
        seed: the random seed; the same seed gives the same rows.
        form: ``"resampled"`` (all draws, with intervals) or ``"paper"`` (URSA's first N, no interval).
        confidence: the interval's coverage.

    Returns:
        One row per N (in the order given) and method (the rules in order, then the baselines in order).

    Raises:
        ConfigError: an unknown rule, baseline or form, or a bad ``resamples``/``confidence``.
        DataError: an empty pool or problem, N out of range, a sample without step scores when rules are asked
            for, or a step score outside [0, 1].
    """
    rules, baselines, ns = list(rules), list(baselines), [int(n) for n in ns]
    _check_options(rules, baselines, form, resamples, confidence)
    data = _PoolArrays(pool, rules, need_groups="majority" in baselines)
    for n in ns:
        if n < 1:
            raise DataError(f"best-of-N needs N >= 1, got {n}")
        short = int(np.argmin(data.sizes))
        if n > data.sizes[short]:
            raise DataError(
                f"N={n} is more than the {data.sizes[short]} samples of problem {short}; "
                f"every problem needs at least N samples (use N <= {int(data.sizes.min())})"
            )
    methods = [f"prm:{r}" for r in rules] + baselines
    rng = np.random.default_rng(seed)
    if form == "paper":
        return [
            BestOfNRow(n, m, float(_paper(data, m, n).mean()), None, None, data.problems, 0)
            for n in ns
            for m in methods
        ]
    weights = _bootstrap_weights(data.problems, resamples, rng)
    per_problem = np.stack([_resampled(data, m, n, resamples, rng) for n in ns for m in methods])
    boot = per_problem @ weights.T.astype(np.float64) / data.problems  # [rows, resamples]
    alpha = (1.0 - confidence) / 2.0
    lows, highs = np.quantile(boot, [alpha, 1.0 - alpha], axis=1)
    means = per_problem.mean(axis=1)
    keys = [(n, m) for n in ns for m in methods]
    return [
        BestOfNRow(n, m, float(means[i]), float(lows[i]), float(highs[i]), data.problems, resamples)
        for i, (n, m) in enumerate(keys)
    ]


def _bootstrap_weights(problems: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """How often each problem appears in each bootstrap replicate (problems drawn with replacement)."""
    idx = rng.integers(0, problems, size=(resamples, problems)) + (np.arange(resamples) * problems)[:, None]
    return np.bincount(idx.ravel(), minlength=resamples * problems).reshape(resamples, problems)


def _check_options(rules: Sequence[str], baselines: Sequence[str], form: str, resamples: int, confidence: float) -> None:
    bad = [r for r in rules if r not in RULES]
    if bad:
        raise ConfigError(f"unknown aggregation rule(s) {', '.join(map(repr, bad))}; choose from {', '.join(RULES)}")
    bad = [b for b in baselines if b not in BASELINES]
    if bad:
        raise ConfigError(f"unknown baseline(s) {', '.join(map(repr, bad))}; choose from {', '.join(BASELINES)}")
    if form not in ("resampled", "paper"):
        raise ConfigError(f"unknown best-of-N form {form!r}; choose 'resampled' or 'paper'")
    if form == "resampled" and resamples < 1:
        raise ConfigError(f"resamples must be at least 1, got {resamples}")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}")


class _PoolArrays:
    """A pool as padded arrays: problems x max samples, padding never drawn."""

    def __init__(self, pool: Pool, rules: Sequence[str], need_groups: bool) -> None:
        if len(pool) == 0:
            raise DataError("best-of-N needs a non-empty pool of problems")
        self.problems = len(pool)
        self.sizes = np.fromiter((len(p) for p in pool), dtype=np.int64, count=self.problems)
        empty = np.flatnonzero(self.sizes == 0)
        if empty.size:
            raise DataError(f"problem {int(empty[0])} of the pool has no samples")
        width = int(self.sizes.max())
        self.width = width
        self.valid = np.arange(width)[None, :] < self.sizes[:, None]
        flat = [s for p in pool for s in p]
        self.correct = np.zeros((self.problems, width))
        self.correct[self.valid] = np.fromiter((bool(s.correct) for s in flat), dtype=np.float64, count=len(flat))
        self.scores: dict[str, np.ndarray] = {}
        if rules:
            self._aggregate(pool, flat, rules)
        if need_groups:
            self._groups(pool)

    def _aggregate(self, pool: Pool, flat: list[Sample], rules: Sequence[str]) -> None:
        lengths = np.empty(len(flat), dtype=np.int64)
        for k, s in enumerate(flat):
            if s.step_scores is None:
                p, j = self._where(k)
                raise DataError(f"sample {j} of problem {p} has no step scores; PRM selection needs them")
            lengths[k] = len(s.step_scores)
        values = np.fromiter((x for s in flat for x in s.step_scores or ()), dtype=np.float64, count=int(lengths.sum()))
        bad = np.flatnonzero(~((values >= 0.0) & (values <= 1.0)))
        if bad.size:
            owner = int(np.searchsorted(np.cumsum(lengths), bad[0], side="right"))
            p, j = self._where(owner)
            raise DataError(f"sample {j} of problem {p} has step score {values[bad[0]]!r}, outside [0, 1]")
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        has = lengths > 0
        for rule in rules:
            agg = np.zeros(len(flat))  # no scored steps: 0.0, as URSA's return_score
            if has.any():
                at, ln = starts[has], lengths[has]
                if rule == "min":
                    agg[has] = np.minimum.reduceat(values, at)
                elif rule == "mean":
                    agg[has] = np.add.reduceat(values, at) / ln
                elif rule == "last":
                    agg[has] = values[at + ln - 1]
                else:
                    agg[has] = np.multiply.reduceat(values, at)
            full = np.full((self.problems, self.width), -np.inf)
            full[self.valid] = agg
            self.scores[rule] = full

    def _groups(self, pool: Pool) -> None:
        """Answer groups per problem, numbered in order of first appearance; blank answers marked."""
        keys: dict[str, str] = {}
        gid = np.full((self.problems, self.width), -1, dtype=np.int64)
        n_groups = np.zeros(self.problems, dtype=np.int64)
        blank_group = np.full(self.problems, -1, dtype=np.int64)
        for p, samples in enumerate(pool):
            seen: dict[str, int] = {}
            for j, s in enumerate(samples):
                key = keys.get(s.answer)
                if key is None:
                    key = keys[s.answer] = normalize_answer(s.answer) if s.answer.strip() else ""
                g = seen.setdefault(key, len(seen))
                gid[p, j] = g
                if key == "":
                    blank_group[p] = g
            n_groups[p] = len(seen)
        self.gid, self.n_groups, self.blank_group = gid, n_groups, blank_group
        g_max = int(n_groups.max())
        rows = np.repeat(np.arange(self.problems), self.sizes)
        cols = gid[self.valid]
        self.group_size = np.zeros((self.problems, g_max))
        np.add.at(self.group_size, (rows, cols), 1.0)
        hits = np.zeros((self.problems, g_max))
        np.add.at(hits, (rows, cols), self.correct[self.valid])
        self.group_correct = np.divide(hits, self.group_size, out=np.zeros_like(hits), where=self.group_size > 0)
        # The paper form's pick of a group is its first sample.
        first = np.full((self.problems, g_max), -1, dtype=np.int64)
        for g in range(g_max):
            hit = gid == g
            first[:, g] = np.where(hit.any(axis=1), hit.argmax(axis=1), -1)
        self.group_first = first

    def _where(self, k: int) -> tuple[int, int]:
        ends = np.cumsum(self.sizes)
        p = int(np.searchsorted(ends, k, side="right"))
        return p, int(k - (ends[p] - self.sizes[p]))


def _votes(counts: np.ndarray, blank: np.ndarray) -> np.ndarray:
    """Counts as votes: a blank answer's group votes only when nothing else was drawn (0.5 < any real count)."""
    if (blank >= 0).any():
        counts = counts.copy()
        rows = np.flatnonzero(blank >= 0)
        col = blank[rows]
        idx = (..., rows, col) if counts.ndim == 3 else (rows, col)
        counts[idx] = np.minimum(counts[idx], 0.5)
    return counts


def _paper(data: _PoolArrays, method: str, n: int) -> np.ndarray:
    """Per problem: whether the pick among the first n samples is correct (URSA's form)."""
    rows = np.arange(data.problems)
    if method.startswith("prm:"):
        pick = data.scores[method[4:]][:, :n].argmax(axis=1)  # first of the highest, as torch.max
        return data.correct[rows, pick]
    if method == "random":
        return data.correct[:, :n].mean(axis=1)
    if method == "oracle":
        return data.correct[:, :n].max(axis=1)
    g_max = data.group_size.shape[1]
    counts = np.zeros((data.problems, g_max))
    np.add.at(counts, (np.repeat(rows, n), data.gid[:, :n].ravel()), 1.0)
    winner = _votes(counts, data.blank_group).argmax(axis=1)  # ties: lowest group = answered first
    return data.correct[rows, data.group_first[rows, winner]]


def _none_drawn(sizes: np.ndarray, n: int, width: int) -> np.ndarray:
    """``H[p, a]``: the chance that a draw of n of problem p's samples misses a fixed set of a of them.

    ``C(S - a, n) / C(S, n)`` for a in 0..width, built by the ratio ``H[a + 1] / H[a] = (S - a - n) / (S - a)``.
    """
    a = np.arange(width)[None, :]
    s = sizes[:, None].astype(np.float64)
    left = s - a
    ratio = np.divide(np.clip(left - n, 0.0, None), left, out=np.zeros((len(sizes), width)), where=left > 0)
    return np.concatenate([np.ones((len(sizes), 1)), np.cumprod(ratio, axis=1)], axis=1)


def _resampled(data: _PoolArrays, method: str, n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Per problem: the expected correctness of the method's pick over draws of n samples."""
    if method == "random" or (method == "majority" and n <= 2):
        # A majority of two is a random pick: two different answers tie and the first drawn is uniform.
        return data.correct.sum(axis=1) / data.sizes
    h = _none_drawn(data.sizes, n, data.width)
    rows = np.arange(data.problems)
    if method == "oracle":
        return 1.0 - h[rows, data.correct.sum(axis=1).astype(np.int64)]
    if method.startswith("prm:"):
        return _prm_exact(data.scores[method[4:]], data.correct, h)
    return _majority_draws(data, n, resamples, rng)


def _prm_exact(scores: np.ndarray, correct: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The exact mean over all n-draws of the correctness of the highest-scored drawn sample.

    With the samples sorted by score (highest first), the sample at sorted position i is the best drawn one when it
    is drawn and none of the i before it is: probability ``H[i] - H[i + 1]``. Samples with equal scores share
    their tie group's probability equally (the first drawn among them is uniform), so the correct indicator is
    replaced by its mean over the tie group. Padding sorts last and gets probability 0.
    """
    p, w = scores.shape
    order = np.argsort(-scores, axis=1, kind="stable")
    sorted_scores = np.take_along_axis(scores, order, axis=1)
    sorted_correct = np.take_along_axis(correct, order, axis=1)
    change = np.ones((p, w), dtype=bool)
    change[:, 1:] = sorted_scores[:, 1:] != sorted_scores[:, :-1]
    seg = np.cumsum(change.ravel()) - 1
    tie_mean = np.bincount(seg, weights=sorted_correct.ravel()) / np.bincount(seg)
    weights = h[:, :w] - h[:, 1 : w + 1]
    return (weights * tie_mean[seg].reshape(p, w)).sum(axis=1)


def _majority_draws(data: _PoolArrays, n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Majority vote's mean correctness over ``resamples`` draws of n samples per problem.

    A draw is simulated by its answer counts (multivariate hypergeometric, one group at a time); the winner is the
    answer with the most votes, ties broken uniformly (what "first drawn" amounts to), and the pick's expected
    correctness is the fraction correct within the winning answer's samples. When n is every sample, the counts
    are fixed and the figure is exact.
    """
    sizes, g_sz, g_ok = data.sizes, data.group_size, data.group_correct
    p, g_max = g_sz.shape
    out = np.empty(p)
    full = sizes == n
    if full.any():
        votes = _votes(g_sz[full], data.blank_group[full])
        top = votes == votes.max(axis=1, keepdims=True)
        out[full] = (top * g_ok[full]).sum(axis=1) / top.sum(axis=1)
    todo = np.flatnonzero(~full)
    if todo.size == 0:
        return out
    # Problems with more answer groups first, so that group g is drawn for a prefix of the rows only.
    todo = todo[np.argsort(-data.n_groups[todo], kind="stable")]
    m = g_sz[todo].astype(np.int64)
    n_groups = data.n_groups[todo]
    rest = m[:, ::-1].cumsum(axis=1)[:, ::-1] - m  # samples in the groups after g
    counts = np.zeros((resamples, todo.size, g_max))
    left = np.full((resamples, todo.size), n, dtype=np.int64)
    for g in range(g_max):
        k = int(np.count_nonzero(n_groups > g))
        if k == 0:
            break
        if g == g_max - 1:
            counts[:, :k, g] = left[:, :k]
            break
        last = n_groups[:k] == g + 1  # the problem's last group takes what is left
        drawn = rng.hypergeometric(m[:k, g], np.maximum(rest[:k, g], 0), left[:, :k]) if k else left[:, :0]
        drawn = np.where(last[None, :], left[:, :k], drawn)
        counts[:, :k, g] = drawn
        left[:, :k] -= drawn
    votes = _votes(counts, data.blank_group[todo])
    votes += rng.random(votes.shape) * 0.5  # uniform tie-break: real counts differ by 1, blank vote is 0.5
    winner = votes.argmax(axis=2)
    ok = np.take_along_axis(np.broadcast_to(g_ok[todo], counts.shape), winner[..., None], axis=2)[..., 0]
    out[todo] = ok.mean(axis=0)
    return out
