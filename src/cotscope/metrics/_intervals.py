"""Confidence intervals: Wilson intervals for rates and percentile bootstrap intervals for any metric."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cotscope.metrics._errors import MetricError, as_1d, as_alpha, as_count


class Interval(NamedTuple):
    """A point estimate with a confidence interval; unpacks as ``point, low, high``."""

    point: float
    low: float
    high: float


def normal_quantile_upper(tail: float) -> float:
    """The ``z`` with ``P(Z > z) = tail`` for a standard normal ``Z``, ``0 < tail <= 0.5``.

    Bisection on ``erfc`` instead of a rational approximation: it needs no
    constants (scipy is not a dependency) and converges to the last bit in
    ~100 steps, which is negligible next to any metric.
    """
    lo, hi = 0.0, 40.0  # P(Z > 40) underflows, so the root is inside.
    while True:
        mid = (lo + hi) / 2.0
        if mid in (lo, hi):
            return mid
        if 0.5 * math.erfc(mid / math.sqrt(2.0)) > tail:
            lo = mid
        else:
            hi = mid


def proportion_ci(k: int, n: int, alpha: float = 0.05) -> Interval:
    """The Wilson score interval for a binomial proportion ``k / n``.

    With ``p = k / n`` and ``z`` the ``1 - alpha / 2`` standard normal quantile::

        center = (p + z**2 / (2 n)) / (1 + z**2 / n)
        half   = z * sqrt(p (1 - p) / n + z**2 / (4 n**2)) / (1 + z**2 / n)

    The interval is ``[center - half, center + half]``; it always lies in
    ``[0, 1]`` and contains ``p`` (the bounds are clamped against rounding, and
    are exactly 0 for ``k = 0`` and 1 for ``k = n``). Unlike the normal (Wald)
    interval it stays informative for rates near 0 or 1 and small ``n``.

    Args:
        k: Number of successes (e.g. misaligned answers to one question), ``0 <= k <= n``.
        n: Number of trials, at least 1.
        alpha: One minus the confidence level, strictly between 0 and 1.

    Returns:
        ``Interval(point=k / n, low, high)``.

    Raises:
        MetricError: If ``k`` or ``n`` is not a non-negative int, ``n`` is 0,
            ``k > n``, or ``alpha`` is not in ``(0, 1)``.
    """
    k = as_count(k, "k", "proportion_ci")
    n = as_count(n, "n", "proportion_ci")
    if n == 0:
        raise MetricError("proportion_ci: n is 0; a rate over no trials is undefined")
    if k > n:
        raise MetricError(f"proportion_ci: k must be <= n; got k={k}, n={n}")
    a = as_alpha(alpha, "proportion_ci")
    z = normal_quantile_upper(a / 2.0)
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom
    low = 0.0 if k == 0 else min(max(center - half, 0.0), p)
    high = 1.0 if k == n else max(min(center + half, 1.0), p)
    return Interval(p, low, high)


def _resample_indices(n: int, n_boot: int, rng: np.random.Generator, strata: NDArray[Any] | None) -> NDArray[np.intp]:
    """``(n_boot, n)`` row indices, drawn with replacement, within each stratum if given."""
    if strata is None:
        return rng.integers(0, n, size=(n_boot, n))
    try:
        _, stratum = np.unique(strata, return_inverse=True)
    except TypeError as exc:
        raise MetricError(f"bootstrap_ci: stratify values cannot be sorted ({exc})") from exc
    idx = np.empty((n_boot, n), dtype=np.intp)
    for c in range(int(stratum.max()) + 1):
        members = np.flatnonzero(stratum == c)
        # Keep every row's stratum in place, so resample b has the same labels layout as the data.
        idx[:, members] = members[rng.integers(0, len(members), size=(n_boot, len(members)))]
    return idx


def bootstrap_ci(
    metric_fn: Callable[..., float],
    *arrays: ArrayLike,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int | None = 0,
    stratify: ArrayLike | None = None,
) -> Interval:
    """A percentile bootstrap confidence interval for ``metric_fn(*arrays)``.

    The rows of ``arrays`` (aligned on their first axis) are resampled with
    replacement ``n_boot`` times; the interval is the ``alpha / 2`` and
    ``1 - alpha / 2`` percentiles (numpy linear interpolation) of the metric over
    the resamples. All resample indices are drawn at once from
    ``numpy.random.default_rng(seed)``, so a seed gives the same interval every
    time; the metric itself is called once per resample.

    Pass ``stratify=labels`` for AUROC, TPR at FPR and other metrics that need
    both classes: rows are then resampled within each label, keeping the class
    counts, so every resample has both classes.

    Example:
        ``bootstrap_ci(roc_auc, scores, labels, stratify=labels)``

    Args:
        metric_fn: Called as ``metric_fn(*resampled_arrays)``; returns a float.
        *arrays: One or more arrays with the same length on their first axis.
        n_boot: Number of resamples, at least 1.
        alpha: One minus the confidence level, strictly between 0 and 1.
        seed: Seed for ``numpy.random.default_rng``; ``None`` draws fresh entropy.
        stratify: Optional per-row stratum (usually the labels) to resample within.

    Returns:
        ``Interval(point=metric_fn(*arrays), low, high)``.

    Raises:
        MetricError: If no arrays are given, they are empty or of different
            lengths, ``n_boot`` or ``alpha`` is invalid, the metric returns NaN or
            an infinite value, or the metric raises MetricError on a resample
            (the message names the resample and suggests ``stratify``). Errors
            from the metric on the original data propagate unchanged.
    """
    fn = "bootstrap_ci"
    if not arrays:
        raise MetricError(f"{fn}: no arrays to resample")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 1:
        raise MetricError(f"{fn}: n_boot must be an int >= 1; got {n_boot!r}")
    a = as_alpha(alpha, fn)
    data = [np.asarray(x) for x in arrays]
    for i, x in enumerate(data):
        if x.ndim == 0:
            raise MetricError(f"{fn}: array {i} is a scalar; expected a sequence of rows")
    n = len(data[0])
    if n == 0:
        raise MetricError(f"{fn}: the arrays are empty")
    if any(len(x) != n for x in data):
        raise MetricError(f"{fn}: arrays must have the same length; got {[len(x) for x in data]}")
    strata = None
    if stratify is not None:
        strata = as_1d(stratify, "stratify", fn)
        if len(strata) != n:
            raise MetricError(f"{fn}: stratify has {len(strata)} rows, the arrays have {n}")

    point = _finite(metric_fn(*data), "the data")
    idx = _resample_indices(n, int(n_boot), np.random.default_rng(seed), strata)
    stats = np.empty(int(n_boot), dtype=np.float64)
    for b in range(int(n_boot)):
        try:
            value = metric_fn(*(x[idx[b]] for x in data))
        except MetricError as exc:
            hint = "" if strata is not None else "; pass stratify=labels so every resample keeps both classes"
            raise MetricError(f"{fn}: the metric failed on resample {b}: {exc}{hint}") from exc
        stats[b] = _finite(value, f"resample {b}")
    low, high = np.percentile(stats, [100.0 * a / 2.0, 100.0 * (1.0 - a / 2.0)])
    return Interval(point, float(low), float(high))


def _finite(value: Any, where: str) -> float:
    x = float(value)
    if not math.isfinite(x):
        raise MetricError(f"bootstrap_ci: the metric returned {x} on {where}")
    return x
