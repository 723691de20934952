"""Best-of-N selection over a pool of sampled solutions: a PRM's pick against majority vote, random and oracle.

A pool holds, for each problem, the sampled solutions with their answer, whether it is correct and (for PRM
selection) its step scores. For each N, each method picks one solution out of N and the accuracy is the fraction
of problems whose pick is correct.

Two forms:

- ``"resampled"`` (default): N of each problem's samples are drawn without replacement and the accuracy is the
  mean over problems and draws. The mean over draws is computed exactly, over *all* draws, for every method: it
  is the value that averaging over ever more random resamples approaches, without their Monte-Carlo noise and
  faster than drawing them (PRM rules, random pick and oracle have closed forms, :func:`_prm_exact`; majority
  vote is counted exactly by generating functions, :func:`_majority_exact`). The interval is a percentile
  bootstrap over problems: ``resamples`` replicates of the problem set drawn with replacement, the same replicates
  for every row so that rows compare; it says how much the figure would move with another set of problems drawn
  like these (the draws of N add no noise to account for).
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

import itertools
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
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

_CORRECT = operator.attrgetter("correct")
_STEP_SCORES = operator.attrgetter("step_scores")
_ANSWER = operator.attrgetter("answer")


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
        resamples: bootstrap replicates behind the interval (0 in the paper form).
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
        resamples: bootstrap replicates of the problem set for the interval (resampled form).
        seed: the bootstrap's random seed (the accuracies themselves are exact); the same seed, the same rows.
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
    if form == "paper":
        return [
            BestOfNRow(n, m, float(_paper(data, m, n).mean()), None, None, data.problems, 0)
            for n in ns
            for m in methods
        ]
    weights = _bootstrap_weights(data.problems, resamples, np.random.default_rng(seed))
    per_problem = np.stack([_resampled(data, m, n) for n in ns for m in methods])
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


def _check_options(
    rules: Sequence[str], baselines: Sequence[str], form: str, resamples: int, confidence: float
) -> None:
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
        self.sizes = np.fromiter(map(len, pool), dtype=np.int64, count=self.problems)
        empty = np.flatnonzero(self.sizes == 0)
        if empty.size:
            raise DataError(f"problem {int(empty[0])} of the pool has no samples")
        self.width = width = int(self.sizes.max())
        self.valid = np.arange(width)[None, :] < self.sizes[:, None]
        flat = list(itertools.chain.from_iterable(pool))
        self.correct = np.zeros((self.problems, width))
        self.correct[self.valid] = np.fromiter(map(bool, map(_CORRECT, flat)), dtype=np.float64, count=len(flat))
        self.scores: dict[str, np.ndarray] = {}
        self._ranked: dict[str, np.ndarray] = {}
        if rules:
            self._aggregate(flat, rules)
        if need_groups:
            self._groups(flat)

    def _aggregate(self, flat: list[Sample], rules: Sequence[str]) -> None:
        lists = list(map(_STEP_SCORES, flat))
        if None in lists:
            p, j = self._where(lists.index(None))
            raise DataError(f"sample {j} of problem {p} has no step scores; PRM selection needs them")
        lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
        ends = np.cumsum(lengths)
        values = np.fromiter(itertools.chain.from_iterable(lists), dtype=np.float64, count=int(ends[-1]))
        bad = np.flatnonzero(~((values >= 0.0) & (values <= 1.0)))  # NaN too
        if bad.size:
            p, j = self._where(int(np.searchsorted(ends, bad[0], side="right")))
            raise DataError(f"sample {j} of problem {p} has step score {float(values[bad[0]])!r}, outside [0, 1]")
        has = lengths > 0
        at, ln = (ends - lengths)[has], lengths[has]
        for rule in rules:
            agg = np.zeros(len(flat))  # no scored steps: 0.0, as URSA's return_score
            if has.any():
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

    def ranked_correct(self, rule: str) -> np.ndarray:
        """Correctness in the rule's score order (highest first), each replaced by its tie group's mean."""
        if rule not in self._ranked:
            scores = self.scores[rule]
            order = np.argsort(-scores, axis=1, kind="stable")
            ranked = np.take_along_axis(scores, order, axis=1)
            change = np.ones(ranked.shape, dtype=bool)
            change[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
            seg = np.cumsum(change.ravel()) - 1
            right = np.take_along_axis(self.correct, order, axis=1).ravel()
            tie_mean = np.bincount(seg, weights=right) / np.bincount(seg)
            self._ranked[rule] = tie_mean[seg].reshape(ranked.shape)
        return self._ranked[rule]

    def _groups(self, flat: list[Sample]) -> None:
        """Answer groups per problem, numbered in order of first appearance; blank answers marked."""
        answers = list(map(_ANSWER, flat))
        key_id: dict[str, int] = {}
        answer_id = {a: key_id.setdefault(normalize_answer(a) if a.strip() else "", len(key_id)) for a in set(answers)}
        blank_id = key_id.get("", -1)
        ids = np.full((self.problems, self.width), len(key_id), dtype=np.int64)  # padding: a key of its own
        ids[self.valid] = np.fromiter(map(answer_id.__getitem__, answers), dtype=np.int64, count=len(answers))
        # first[p, j]: where sample j's answer first appears in its problem
        order = np.argsort(ids, axis=1, kind="stable")
        ranked = np.take_along_axis(ids, order, axis=1)
        start = np.ones(ranked.shape, dtype=bool)
        start[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
        run_first = np.maximum.accumulate(np.where(start, np.arange(self.width)[None, :], 0), axis=1)
        first_sorted = np.take_along_axis(order, run_first, axis=1)
        first = np.empty_like(first_sorted)
        np.put_along_axis(first, order, first_sorted, axis=1)
        is_first = (first == np.arange(self.width)[None, :]) & self.valid
        gid = np.take_along_axis(np.cumsum(is_first, axis=1), first, axis=1) - 1
        gid[~self.valid] = -1
        self.gid = gid
        self.n_groups = is_first.sum(axis=1)
        g_max = int(self.n_groups.max())
        blank_hit = (ids == blank_id) & self.valid
        self.blank_group = np.where(blank_hit.any(axis=1), gid[np.arange(self.problems), blank_hit.argmax(axis=1)], -1)
        rows = np.repeat(np.arange(self.problems), self.sizes)
        cols = gid[self.valid]
        self.group_size = np.zeros((self.problems, g_max))
        np.add.at(self.group_size, (rows, cols), 1.0)
        hits = np.zeros((self.problems, g_max))
        np.add.at(hits, (rows, cols), self.correct[self.valid])
        self.group_correct = np.divide(hits, self.group_size, out=np.zeros_like(hits), where=self.group_size > 0)
        # The paper form's pick of a group is its first sample.
        self.group_first = np.full((self.problems, g_max), -1, dtype=np.int64)
        pr, pj = np.nonzero(is_first)
        self.group_first[pr, gid[pr, pj]] = pj

    def _where(self, k: int) -> tuple[int, int]:
        """(problem, sample) of the k-th sample of the flattened pool."""
        ends = np.cumsum(self.sizes)
        p = int(np.searchsorted(ends, k, side="right"))
        return p, int(k - (ends[p] - self.sizes[p]))


def _votes(counts: np.ndarray, blank: np.ndarray) -> np.ndarray:
    """Counts as votes: a blank answer's group votes only when nothing else was drawn (0.5 < any real count)."""
    if (blank >= 0).any():
        counts = counts.copy()
        rows = np.flatnonzero(blank >= 0)
        col = blank[rows]
        counts[rows, col] = np.minimum(counts[rows, col], 0.5)
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


def _resampled(data: _PoolArrays, method: str, n: int) -> np.ndarray:
    """Per problem: the exact mean correctness of the method's pick over all draws of n samples."""
    if method == "random":
        return data.correct.sum(axis=1) / data.sizes
    if method == "majority":
        return _majority_exact(data, n)
    h = _none_drawn(data.sizes, n, data.width)
    rows = np.arange(data.problems)
    if method == "oracle":
        return 1.0 - h[rows, data.correct.sum(axis=1).astype(np.int64)]
    return _prm_exact(data.ranked_correct(method[4:]), h)


def _prm_exact(ranked_correct: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The exact mean over all n-draws of the correctness of the highest-scored drawn sample.

    With the samples sorted by score (highest first), the sample at sorted position i is the best drawn one when it
    is drawn and none of the i before it is: probability ``H[i] - H[i + 1]``. Samples with equal scores share
    their tie group's probability equally (the first drawn among them is uniform), which is why the correctness
    comes replaced by its tie group's mean (:meth:`_PoolArrays.ranked_correct`). Padding sorts last and gets
    probability 0.
    """
    w = ranked_correct.shape[1]
    return ((h[:, :w] - h[:, 1 : w + 1]) * ranked_correct).sum(axis=1)


@cache
def _gauss_legendre(points: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on [-1, 1]: exact for polynomials of degree below 2 * points."""
    nodes, weights = np.polynomial.legendre.leggauss(points)
    return nodes, weights


def _log_factorials(upto: int) -> np.ndarray:
    return np.concatenate(([0.0], np.cumsum(np.log(np.arange(1, upto + 1, dtype=np.float64)))))


def _majority_exact(data: _PoolArrays, n: int) -> np.ndarray:
    """Majority vote's exact mean correctness over all draws of n samples, per problem.

    Counting argument. With the blank answers set aside, the vote is won at count k by answer g when g has k
    samples in the draw and every other answer at most k; t other answers also at k make a tie that g wins with
    probability ``1 / (t + 1)`` (the first drawn of the tied answers is uniform among them), and the pick is right
    with probability ``q_g``, the fraction right among g's samples. So the mean is
    ``sum_k sum_g q_g C(m_g, k) [z^(n-k)] prod_(h != g) (A_h,k(z) + y C(m_h, k) z^k) * Blank(z)``, integrated over
    y in [0, 1] (``integral of y^t = 1 / (t + 1)``) and divided by ``C(S, n)``, where ``A_h,k`` sums
    ``C(m_h, j) z^j`` for j < k and ``Blank(z) = (1 + z)^(m_blank)``; a draw of blank answers only picks a blank.

    Computed in the evaluation domain: each polynomial is evaluated at L roots of unity (L larger than both n and
    S - n, so the coefficient of z^n has no alias), the binomial coefficients are thinned to probabilities
    (``C(m, j) p^j (1 - p)^(m - j)`` with p = n / S, so every value stays near 1 in size), answers of the same size
    share their factor (few sizes even with many answers), the y-integral is Gauss-Legendre (exact: the degree in y
    is below the number of answers that can reach k), and the coefficient comes back by one inverse DFT term.
    """
    out = np.zeros(data.problems)
    full = data.sizes == n
    if full.any():  # every sample drawn: the counts are the group sizes
        votes = _votes(data.group_size[full], data.blank_group[full])
        top = votes == votes.max(axis=1, keepdims=True)
        out[full] = (top * data.group_correct[full]).sum(axis=1) / top.sum(axis=1)
    rows = np.flatnonzero(~full)
    if rows.size == 0:
        return out
    size = data.group_size[rows].copy()
    ok = data.group_correct[rows]
    blank = data.blank_group[rows]
    has_blank = blank >= 0
    b_col = np.where(has_blank, blank, 0)
    r = np.arange(rows.size)
    m_blank = np.where(has_blank, size[r, b_col], 0.0)
    q_blank = np.where(has_blank, ok[r, b_col], 0.0)
    size[r[has_blank], b_col[has_blank]] = 0.0  # blank answers do not vote
    s_total = data.sizes[rows].astype(np.float64)
    out[rows] = _majority_counting(size.astype(np.int64), ok, m_blank, q_blank, s_total, n)
    return out


def _int_power(base: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """``base ** exponent`` for small non-negative integer exponents (broadcast against base), by squaring.

    numpy's complex power goes through logarithms and is many times slower; exponents are answer counts here.
    """
    e = exponent.copy()
    out: np.ndarray | None = None
    b = base
    while e.any():
        odd = (e & 1) == 1
        if odd.all():
            out = b if out is None else out * b
        elif odd.any():
            out = np.where(odd, b, 1.0) if out is None else np.where(odd, out * b, out)
        e >>= 1
        if e.any():
            b = b * b
    return np.ones_like(base) if out is None else np.broadcast_to(out, base.shape)


#: Up to this many answers per problem each answer is a factor of its own; beyond, answers of one size share one.
_MAX_SEPARATE_ANSWERS = 8


def _answer_classes(size: np.ndarray, ok: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The factors of the counting: (size, how many answers, their summed q), class-major ``[C, P]``.

    With few answers per problem every answer is its own class (how many = 1, no powers to take). With many,
    answers of one size share a class, raised to the power of how many there are: at most about sqrt(2 S) sizes
    fit in S samples, however many answers there are.
    """
    p_rows = size.shape[0]
    if size.shape[1] <= _MAX_SEPARATE_ANSWERS:
        order = np.argsort(size == 0, axis=1, kind="stable")
        c_size = np.take_along_axis(size, order, axis=1)
        n_classes = max(int((c_size > 0).sum(axis=1).max()), 1)
        c_size = c_size[:, :n_classes]
        c_q = np.take_along_axis(ok, order, axis=1)[:, :n_classes]
        return c_size.T.copy(), (c_size > 0).astype(np.int64).T.copy(), c_q.T.copy()
    by_size = np.zeros((p_rows, width + 1))
    q_by_size = np.zeros((p_rows, width + 1))
    rr = np.repeat(np.arange(p_rows), size.shape[1])
    np.add.at(by_size, (rr, size.ravel()), 1.0)
    np.add.at(q_by_size, (rr, size.ravel()), ok.ravel())
    by_size[:, 0] = 0.0
    n_classes = max(int((by_size > 0).sum(axis=1).max()), 1)
    order = np.argsort(by_size == 0, axis=1, kind="stable")[:, :n_classes]
    mult = np.take_along_axis(by_size, order, axis=1).astype(np.int64)
    c_size = np.where(mult > 0, order, 0)
    return c_size.T.copy(), mult.T.copy(), np.take_along_axis(q_by_size, order, axis=1).T.copy()


def _majority_counting(
    size: np.ndarray, ok: np.ndarray, m_blank: np.ndarray, q_blank: np.ndarray, s_total: np.ndarray, n: int
) -> np.ndarray:
    """The sum of :func:`_majority_exact` for problems with more than n samples (sizes: answers' group sizes)."""
    p_rows = size.shape[0]
    width = int(s_total.max())
    logf = _log_factorials(width)
    c_size, c_mult, c_q = _answer_classes(size, ok, width)
    n_classes = c_size.shape[0]
    shared = bool((c_mult > 1).any())
    groups_nb = c_mult.sum(axis=0)
    prob = n / s_total  # thinning probability, 0 < p < 1 here
    logp, log1p = np.log(prob), np.log1p(-prob)
    k_hi = min(n, int(c_size.max()))
    # a[c, p, i]: C(size, i) p^i (1 - p)^(size - i) for i = 0..k_hi (0 beyond the size)
    i = np.arange(k_hi + 1)
    sz = c_size[:, :, None]
    valid = (i <= sz) & (c_mult[:, :, None] > 0)
    log_a = logf[sz] - logf[i] - logf[np.where(valid, sz - i, 0)] + i * logp[:, None] + (sz - i) * log1p[:, None]
    a = np.where(valid, np.exp(np.where(valid, log_a, 0.0)), 0.0)
    a[:, :, 0] = np.where(c_mult > 0, a[:, :, 0], 1.0)  # padding classes: the constant 1, a neutral factor
    # Evaluation points: L odd and larger than n and S - n; real coefficients, so half the points suffice.
    length = max(n, width - n) + 1
    length += 1 - length % 2
    half = length // 2 + 1
    j = np.arange(half)
    z = np.exp(2j * np.pi * j / length)
    blank_f = _int_power((1.0 - prob)[:, None] + prob[:, None] * z[None, :], m_blank.astype(np.int64)[:, None])
    e = np.repeat(a[:, :, :1], half, axis=2).astype(np.complex128)  # A_{., 1}: the j = 0 term
    total = np.zeros((p_rows, half), dtype=np.complex128)
    for k in range(1, k_hi + 1):
        t = a[:, :, k, None] * np.exp(2j * np.pi * k * j / length)  # C(m, k) p^k (1-p)^(m-k) z^k
        reach = (c_size >= k) & (c_mult > 0)
        live = np.flatnonzero(reach.any(axis=0) & (k * groups_nb + m_blank >= n))
        if live.size:
            # at most n // k answers reach k in one draw: y's degree is below that, and below the answers that can
            at_k = min(int((c_mult * reach)[:, live].sum(axis=0).max()), n // k)
            nodes, weights = _gauss_legendre(max(1, (at_k + 1) // 2))
            e_l, t_l = e[:, live], t[:, live]
            mult = c_mult[:, live, None]
            cand = c_q[:, live, None] * t_l
            can_win = np.asarray((reach[:, live] & (c_q[:, live] > 0)).any(axis=1))  # classes whose pick can be right
            acc = np.zeros((live.size, half), dtype=np.complex128)
            for x, w in zip(nodes, weights, strict=True):
                b = e_l + (x + 1.0) / 2.0 * t_l
                if shared:  # the other answers of the candidate's size, and the whole class
                    rest = _int_power(b, np.maximum(mult - 1, 0))
                    pw = rest * b
                else:
                    rest, pw = b, b  # rest unused
                pre = np.ones_like(b[0])
                others = [pre]
                for c in range(1, n_classes):
                    pre = pre * pw[c - 1]
                    others.append(pre)
                suf = np.ones_like(b[0])
                for c in range(n_classes - 1, -1, -1):
                    if can_win[c]:
                        acc += (w / 2.0) * cand[c] * others[c] * suf * (rest[c] if shared else 1.0)
                    if c:
                        suf = suf * pw[c]
            total[live] += acc * blank_f[live]
        e += t
    # the coefficient of z^n: (1/L) sum over all L points = (1/L) (point 0 + 2 Re(sum over the other half))
    terms = (total * np.exp(-2j * np.pi * n * j / length)[None, :]).real
    coef = (terms[:, 0] + 2.0 * terms[:, 1:].sum(axis=1)) / length
    s_int = s_total.astype(np.int64)
    log_choose = logf[s_int] - logf[n] - logf[s_int - n]
    mean = coef / np.exp(log_choose + n * logp + (s_total - n) * log1p)
    # a draw of blank answers only: its pick is a blank answer
    mb = m_blank.astype(np.int64)
    only_blank = mb >= n
    log_c = logf[np.where(only_blank, mb, n)] - logf[n] - logf[np.where(only_blank, mb - n, 0)] - log_choose
    return mean + np.where(only_blank, q_blank * np.exp(log_c), 0.0)
