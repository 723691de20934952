"""Benchmark: best-of-N over a pool of sampled solutions against a bare numpy floor, measured in the same run.

The pool is synthetic: P problems x S samples, each with 1-8 step scores and an answer out of a few per problem (the
right one more likely when the scores are high), so every method has something to find. Measured:

- ``resampled``: :func:`best_of_n` for every N in 1, 2, 4, ..., S, every rule (min, mean, last, product) and the
  baselines majority, random and oracle, with bootstrap intervals (``--resamples`` replicates and majority draws);
- ``paper``: the same rows in URSA's first-N form (no intervals);
- ``floor``: a bare numpy argmax per N and rule over the already aggregated score matrix, and the gather of the
  picks' labels: the least any best-of-N must do, with no aggregation, answer grouping, baselines or intervals.

Each figure is the best of ``--repeat`` runs. Usage: ``python bench/verify_bench.py [--problems 1000]
[--samples 64] [--resamples 1000] [--repeat 3] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np

from cotscope.verify._bestofn import Sample, best_of_n

RULES = ("min", "mean", "last", "product")
BASELINES = ("majority", "random", "oracle")


def make_pool(problems: int, samples: int, seed: int = 0) -> list[list[Sample]]:
    """A synthetic pool: answers "0".."4" per problem ("0" right), step scores a little higher when right."""
    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(problems):
        p_right = rng.uniform(0.1, 0.9)
        right = rng.random(samples) < p_right
        wrong_answers = rng.integers(1, 5, samples)
        steps = rng.integers(1, 9, samples)
        row = []
        for j in range(samples):
            base = 0.65 if right[j] else 0.5
            scores = np.clip(rng.normal(base, 0.2, steps[j]), 0.0, 1.0)
            row.append(Sample("0" if right[j] else str(wrong_answers[j]), bool(right[j]), scores.tolist()))
        pool.append(row)
    return pool


def _floor(scores: dict[str, np.ndarray], correct: np.ndarray, ns: list[int]) -> float:
    rows = np.arange(correct.shape[0])
    total = 0.0
    for n in ns:
        for rule in RULES:
            total += float(correct[rows, scores[rule][:, :n].argmax(axis=1)].mean())
    return total


def _best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    """Build the pool, time the three, print the figures and the ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    t0 = time.perf_counter()
    pool = make_pool(args.problems, args.samples)
    build = time.perf_counter() - t0
    ns = [2**k for k in range(args.samples.bit_length()) if 2**k <= args.samples]
    correct = np.array([[s.correct for s in p] for p in pool], dtype=np.float64)
    agg = {
        "min": np.array([[min(s.step_scores or [0.0]) for s in p] for p in pool]),
        "mean": np.array([[float(np.mean(s.step_scores)) for s in p] for p in pool]),
        "last": np.array([[(s.step_scores or [0.0])[-1] for s in p] for p in pool]),
        "product": np.array([[float(np.prod(s.step_scores)) for s in p] for p in pool]),
    }

    def resampled() -> object:
        return best_of_n(pool, ns=ns, rules=RULES, baselines=BASELINES, resamples=args.resamples)

    def paper() -> object:
        return best_of_n(pool, ns=ns, rules=RULES, baselines=BASELINES, form="paper")

    floor = _best(lambda: _floor(agg, correct, ns), args.repeat)
    t_res = _best(resampled, args.repeat)
    t_pap = _best(paper, args.repeat)
    rows = resampled()
    assert isinstance(rows, list)
    top = {(r.n, r.method): r for r in rows if r.n == ns[-1] or r.n == 8}
    figures = {
        "problems": args.problems,
        "samples": args.samples,
        "ns": ns,
        "rows": len(rows),
        "resamples": args.resamples,
        "pool_build_s": round(build, 3),
        "resampled_s": round(t_res, 4),
        "paper_s": round(t_pap, 4),
        "floor_s": round(floor, 5),
        "resampled_over_floor": round(t_res / floor, 1),
        "paper_over_floor": round(t_pap / floor, 1),
        "accuracy_n8": {m: round(top[8, m].accuracy, 4) for m in [f"prm:{r}" for r in RULES] + list(BASELINES)},
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(f"pool: {args.problems} problems x {args.samples} samples (built in {build:.2f} s); N in {ns}")
    print(f"rows: {len(rows)} (every N x 4 rules + majority, random, oracle), {args.resamples} resamples")
    print(f"resampled best_of_n : {t_res * 1000:8.1f} ms   ({t_res / floor:6.1f}x the floor)")
    print(f"paper best_of_n     : {t_pap * 1000:8.1f} ms   ({t_pap / floor:6.1f}x the floor)")
    print(f"floor (numpy argmax): {floor * 1000:8.1f} ms")
    print("accuracy at N=8:", json.dumps(figures["accuracy_n8"]))


if __name__ == "__main__":
    main()
