"""Best-of-N: hand-computed pools in both forms, a brute-force check over every ordered draw, and the errors."""

from __future__ import annotations

import functools
import itertools
import random
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pytest

from cotscope.errors import ConfigError, DataError
from cotscope.verify import _bestofn
from cotscope.verify._aggregate import aggregate
from cotscope.verify._answers import normalize_answer
from cotscope.verify._bestofn import BestOfNRow, Sample, best_of_n

ALL = ("majority", "random", "oracle")

# One problem. Scores by rule:   min   mean   last  product
#   s0 "1" right  [0.9, 0.8]     0.8   0.85   0.8   0.72
#   s1 "2" wrong  [0.6, 0.95]    0.6   0.775  0.95  0.57
#   s2 "1" right  [0.2]          0.2   0.2    0.2   0.2
#   s3 "3" wrong  []             0     0      0     0     (no scored step: 0, as URSA)
# "last" ranks s1 first; every other rule ranks s0 first.
PROBLEM = [
    Sample("1", True, [0.9, 0.8]),
    Sample("2", False, [0.6, 0.95]),
    Sample("1", True, [0.2]),
    Sample("3", False, []),
]


def _table(rows: Sequence[BestOfNRow]) -> dict[tuple[int, str], float]:
    return {(r.n, r.method): r.accuracy for r in rows}


def test_paper_form_hand_computed() -> None:
    rows = best_of_n([PROBLEM], ns=(1, 2, 4), baselines=ALL, form="paper")
    assert [(r.n, r.method) for r in rows[:7]] == [
        (1, m) for m in ("prm:min", "prm:mean", "prm:last", "prm:product", "majority", "random", "oracle")
    ]
    assert all(r.ci_low is None and r.ci_high is None and r.resamples == 0 and r.problems == 1 for r in rows)
    got = _table(rows)
    # N=1: s0 only
    assert all(got[1, m] == 1.0 for m in ("prm:min", "prm:mean", "prm:last", "prm:product", "majority", "oracle"))
    assert got[1, "random"] == 1.0
    # N=2: s0, s1; "last" picks s1; the majority tie "1" vs "2" goes to the first, s0
    assert got[2, "prm:min"] == got[2, "prm:mean"] == got[2, "prm:product"] == 1.0
    assert got[2, "prm:last"] == 0.0
    assert got[2, "majority"] == 1.0
    assert got[2, "random"] == 0.5
    assert got[2, "oracle"] == 1.0
    # N=4: "1" is the majority
    assert got[4, "prm:min"] == 1.0 and got[4, "prm:last"] == 0.0
    assert got[4, "majority"] == 1.0 and got[4, "random"] == 0.5


def test_resampled_form_hand_computed() -> None:
    rows = best_of_n([PROBLEM], ns=(1, 2, 3, 4), baselines=ALL, resamples=100, seed=1)
    got = _table(rows)
    # N=1: a random sample; every method is the fraction right, 1/2
    assert all(got[1, m] == pytest.approx(0.5) for m in ("prm:min", "prm:last", "majority", "random", "oracle"))
    # N=2, 6 pairs equally likely: the best of the pair by min is right in {01, 02, 03, 12, 23} wrong in {13}...
    # by position in the ranking s0 > s1 > s2 > s3: P(top is s0) = 3/6, s1 = 2/6, s2 = 1/6
    assert got[2, "prm:min"] == pytest.approx(3 / 6 + 1 / 6)
    assert got[2, "prm:mean"] == got[2, "prm:product"] == pytest.approx(4 / 6)
    # by last, s1 > s0 > s2 > s3
    assert got[2, "prm:last"] == pytest.approx(2 / 6 + 1 / 6)
    assert got[2, "majority"] == pytest.approx(0.5)  # a majority of two is a random pick
    assert got[2, "oracle"] == pytest.approx(5 / 6)  # only {s1, s3} has no right answer
    # N=3, 4 triples: top by min is s0 in 3 of them, s1 in 1
    assert got[3, "prm:min"] == pytest.approx(3 / 4)
    assert got[3, "prm:last"] == pytest.approx(1 / 4)
    # majority of three: {0,1,2} and {0,2,3} have "1" twice (right); {0,1,3} and {1,2,3} are three-way ties,
    # right with probability 1/3: (1 + 1/3 + 1 + 1/3) / 4 = 2/3
    assert got[3, "majority"] == pytest.approx(2 / 3)
    assert got[3, "oracle"] == 1.0
    # N=4: everything drawn
    assert got[4, "prm:min"] == 1.0 and got[4, "prm:last"] == 0.0 and got[4, "majority"] == 1.0
    assert got[4, "random"] == pytest.approx(0.5)


def test_ties_in_scores() -> None:
    problem = [Sample("a", False, [0.5]), Sample("b", True, [0.5]), Sample("c", False, [0.1])]
    paper = _table(best_of_n([problem], ns=(2,), rules=("min",), baselines=(), form="paper"))
    assert paper[2, "prm:min"] == 0.0  # the first of the tied, as torch.max
    resampled = _table(best_of_n([problem], ns=(2, 3), rules=("min",), baselines=()))
    # pairs: {0,1} tie, the first drawn is uniform (1/2); {0,2} wrong; {1,2} right: (1/2 + 0 + 1) / 3
    assert resampled[2, "prm:min"] == pytest.approx(0.5)
    assert resampled[3, "prm:min"] == pytest.approx(0.5)


def test_blank_answers_do_not_vote() -> None:
    problem = [Sample("", False), Sample(" ", False), Sample("5", True)]
    assert _table(best_of_n([problem], ns=(3,), rules=(), baselines=("majority",), form="paper"))[3, "majority"] == 1
    assert _table(best_of_n([problem], ns=(3,), rules=(), baselines=("majority",)))[3, "majority"] == 1
    blank = [Sample("", False), Sample("", True)]
    assert _table(best_of_n([blank], ns=(2,), rules=(), baselines=("majority",), form="paper"))[2, "majority"] == 0


def test_majority_groups_equivalent_answers() -> None:
    problem = [Sample("7", False), Sample("1/2", True), Sample("0.5", True), Sample("\\frac{1}{2}", True)]
    assert _table(best_of_n([problem], ns=(4,), rules=(), baselines=("majority",), form="paper"))[4, "majority"] == 1


def test_several_problems_and_ragged_pool() -> None:
    right = [Sample("1", True, [0.9]), Sample("2", False, [0.1]), Sample("1", True, [0.8])]
    wrong = [Sample("3", False, [0.9]), Sample("4", True, [0.2])]
    rows = best_of_n([right, wrong], ns=(1, 2), rules=("min",), baselines=("random", "oracle"), form="paper")
    got = _table(rows)
    assert got[1, "prm:min"] == 0.5  # right's s0, wrong's s0
    assert got[2, "prm:min"] == 0.5
    assert got[2, "random"] == pytest.approx((0.5 + 0.5) / 2)
    assert got[2, "oracle"] == 1.0
    res = _table(best_of_n([right, wrong], ns=(2,), rules=("min",), baselines=("random",)))
    # right: pairs {01}: s0 right, {02}: s0 right, {12}: s2 right -> 1; wrong: the pair is fixed, s0 wrong -> 0
    assert res[2, "prm:min"] == pytest.approx(0.5)
    assert res[2, "random"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    with pytest.raises(DataError, match=r"N=3 .* problem 1"):
        best_of_n([right, wrong], ns=(3,), rules=("min",))


# ------------------------------------------------------------------------------------ brute force, by draws


def _pick_in_order(samples: Sequence[Sample], method: str) -> float:
    """Whether a method's pick among samples drawn in this order is right (ties: the first drawn)."""
    if method == "oracle":
        return float(any(s.correct for s in samples))
    if method == "random":
        return float(samples[0].correct)  # a uniform pick is the first of a uniform order
    if method.startswith("prm:"):
        scores = [_score(tuple(s.step_scores or ()), method[4:]) for s in samples]
        return float(samples[scores.index(max(scores))].correct)
    keys = [_key(s.answer) for s in samples]
    votes = Counter(k for k in keys if k)
    if not votes:
        return float(samples[0].correct)
    top = max(votes.values())
    return float(samples[next(i for i, k in enumerate(keys) if votes.get(k) == top)].correct)


@functools.cache
def _score(scores: tuple[float, ...], rule: str) -> float:
    return aggregate(scores, rule)


@functools.cache
def _key(answer: str) -> str:
    return normalize_answer(answer) if answer.strip() else ""


def _brute(problem: list[Sample], n: int, method: str) -> float:
    """The mean over every ordered draw of n samples of the pick's correctness."""
    draws = list(itertools.permutations(problem, n))
    return sum(_pick_in_order(d, method) for d in draws) / len(draws)


def _random_problem(
    rng: random.Random, size: int, answers: Sequence[str] = ("1", "2", "3", "4", "5", "", "1.0")
) -> list[Sample]:
    out = []
    for _ in range(size):
        answer = rng.choice(answers)
        scores = [rng.choice([0.1, 0.5, 0.5, 0.9]) for _ in range(rng.randint(0, 3))]
        out.append(Sample(answer, answer in ("1", "1.0") and rng.random() < 0.9, scores))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_resampled_equals_mean_over_all_draws(seed: int) -> None:
    rng = random.Random(seed)
    pool = [_random_problem(rng, rng.choice([6, 7])) for _ in range(5)]  # ragged: N up to 6
    rows = best_of_n(pool, ns=(1, 2, 3, 4, 5, 6), baselines=ALL, resamples=50, seed=seed)
    for row in rows:
        expected = sum(_brute(p, row.n, row.method) for p in pool) / len(pool)
        assert row.accuracy == pytest.approx(expected, abs=1e-9), (row.n, row.method)
        assert row.ci_low is not None and row.ci_high is not None
        assert row.ci_low - 1e-12 <= row.accuracy <= row.ci_high + 1e-12


@pytest.mark.parametrize("seed", range(3))
def test_majority_with_many_answers_shares_factors(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond a few answers per problem, answers of one size share a factor raised to a power: same figures."""
    rng = random.Random(10 + seed)
    answers = ["1", "2", "3", "4", "5", "6", "7", "8", "9", ""]
    pool = [_random_problem(rng, 8, answers) for _ in range(3)] + [_random_problem(rng, 8, ["1", "1", "2"])]
    ns = (1, 2, 3, 4, 5, 7, 8)
    exact = {n: sum(_brute(p, n, "majority") for p in pool) / len(pool) for n in ns}
    for limit in (0, 100):  # every problem in shared classes, then every answer separate
        monkeypatch.setattr(_bestofn, "_MAX_SEPARATE_ANSWERS", limit)
        for row in best_of_n(pool, ns=ns, rules=(), baselines=("majority",), resamples=10):
            assert row.accuracy == pytest.approx(exact[row.n], abs=1e-9), (limit, row.n)


@pytest.mark.parametrize("seed", range(3))
def test_paper_form_is_the_first_n(seed: int) -> None:
    rng = random.Random(seed)
    pool = [_random_problem(rng, 5) for _ in range(4)]
    for row in best_of_n(pool, ns=(1, 3, 5), baselines=ALL, form="paper"):
        if row.method == "random":
            expected = [sum(s.correct for s in p[: row.n]) / row.n for p in pool]
        else:
            expected = [_pick_in_order(list(p[: row.n]), row.method) for p in pool]
        assert row.accuracy == pytest.approx(sum(expected) / len(expected)), (row.n, row.method)


# ------------------------------------------------------------------------------------------ intervals, seeds


def test_intervals_and_seed() -> None:
    rng = random.Random(7)
    pool = [_random_problem(rng, 8) for _ in range(40)]
    a = best_of_n(pool, ns=(1, 4, 8), resamples=300, seed=3)
    b = best_of_n(pool, ns=(1, 4, 8), resamples=300, seed=3)
    c = best_of_n(pool, ns=(1, 4, 8), resamples=300, seed=4)
    assert a == b
    assert a != c
    for row in a:
        assert row.problems == 40 and row.resamples == 300
        assert row.ci_low is not None and row.ci_high is not None
        assert 0.0 <= row.ci_low <= row.accuracy <= row.ci_high <= 1.0
        if row.method != "oracle" or row.n < 8:
            assert row.ci_high > row.ci_low  # 40 different problems: the figure has spread


def test_identical_problems_have_no_spread() -> None:
    rows = best_of_n([PROBLEM] * 5, ns=(2,), rules=("min",), baselines=())
    assert rows[0].ci_low == pytest.approx(rows[0].accuracy) == pytest.approx(rows[0].ci_high)


# ------------------------------------------------------------------------------------------------- errors


def test_errors() -> None:
    with pytest.raises(DataError, match="non-empty pool"):
        best_of_n([])
    with pytest.raises(DataError, match=r"problem 1 .* no samples"):
        best_of_n([PROBLEM, []], ns=(1,))
    with pytest.raises(DataError, match=r"N=8 .* 4 samples"):
        best_of_n([PROBLEM], ns=(1, 8))
    with pytest.raises(DataError, match="N >= 1"):
        best_of_n([PROBLEM], ns=(0,))
    with pytest.raises(DataError, match="sample 1 of problem 0 has no step scores"):
        best_of_n([[Sample("1", True, [0.5]), Sample("2", False)]], ns=(1,))
    with pytest.raises(DataError, match=r"sample 1 of problem 1 has step score 1\.5"):
        best_of_n([PROBLEM, [Sample("1", True, [0.5]), Sample("2", False, [0.1, 1.5])]], ns=(1,))
    with pytest.raises(ConfigError, match="avg"):
        best_of_n([PROBLEM], ns=(1,), rules=("avg",))
    with pytest.raises(ConfigError, match="vote"):
        best_of_n([PROBLEM], ns=(1,), baselines=("vote",))
    with pytest.raises(ConfigError, match="form"):
        best_of_n([PROBLEM], ns=(1,), form="other")
    with pytest.raises(ConfigError, match="resamples"):
        best_of_n([PROBLEM], ns=(1,), resamples=0)
    # baselines alone need no step scores
    assert best_of_n([[Sample("1", True), Sample("2", False)]], ns=(1, 2), rules=())


def test_majority_exact_at_scale_agrees_with_simulation() -> None:
    """64 samples and N up to 32: the counting stays exact where brute force cannot go (checked by simulation)."""
    gen = np.random.default_rng(5)
    pool, ids_all, right_all = [], [], []
    for _ in range(12):
        ids = gen.choice(6, size=64, p=gen.dirichlet(np.ones(6)))
        right = ids == 0
        ids_all.append(ids)
        right_all.append(right)
        pool.append([Sample(str(i), bool(r)) for i, r in zip(ids, right, strict=True)])
    ns = (3, 8, 16, 32, 63)
    rows = _table(best_of_n(pool, ns=ns, rules=(), baselines=("majority",), resamples=10))
    draws = 20000
    for n in ns:
        sims = []
        for ids, right in zip(ids_all, right_all, strict=True):
            drawn = np.argsort(gen.random((draws, 64)), axis=1)[:, :n]  # a uniform ordered draw of n
            labels = ids[drawn]
            counts = (labels[:, :, None] == np.arange(6)).sum(axis=1)
            first = np.where(counts > 0, (labels[:, :, None] == np.arange(6)).argmax(axis=1), n)
            winner = np.argmin(-counts * (n + 1) + first, axis=1)  # most votes, then drawn first
            pick = drawn[np.arange(draws), first[np.arange(draws), winner]]
            sims.append(right[pick].mean())
        assert rows[n, "majority"] == pytest.approx(float(np.mean(sims)), abs=0.006), n
