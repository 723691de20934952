"""Similarity of reasoning-habit profiles (CogTest-style habit counts per model)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cotscope.metrics._errors import MetricError, as_scores, same_length


def _unit(v: NDArray[np.float64], name: str, fn: str) -> NDArray[np.float64]:
    """``v / |v|``, scaled first so huge counts cannot overflow the norm."""
    peak = float(np.max(np.abs(v)))
    if peak == 0.0:
        raise MetricError(f"{fn} is undefined: {name} is all zeros")
    w = v / peak
    return w / math.sqrt(float(np.dot(w, w)))


def cosine_similarity(a: ArrayLike, b: ArrayLike) -> float:
    """Cosine similarity ``a . b / (|a| |b|)`` of two count (or any real) vectors.

    Args:
        a: Finite real numbers, e.g. habit counts of one model.
        b: Finite real numbers, same length and habit order.

    Returns:
        The similarity in ``[-1, 1]`` (``[0, 1]`` for counts).

    Raises:
        MetricError: If the vectors are empty, of different lengths, hold NaN or
            infinite values, or either is all zeros (0/0).
    """
    fn = "cosine_similarity"
    u = as_scores(a, "a", fn)
    v = as_scores(b, "b", fn)
    same_length(fn, a=u, b=v)
    r = float(np.dot(_unit(u, "a", fn), _unit(v, "b", fn)))
    return min(1.0, max(-1.0, r))


def profile_similarity(profiles: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Pairwise cosine similarity of habit profiles.

    Each profile maps a habit to its count; a habit missing from a profile
    counts 0, so the vectors are built over the union of habits.

    Args:
        profiles: ``{model: {habit: count}}`` with finite, non-negative counts.

    Returns:
        A symmetric ``{model_a: {model_b: similarity}}`` over all pairs, the
        diagonal exactly 1.0, models in the order given.

    Raises:
        MetricError: If there are no profiles, a count is negative, NaN or
            infinite, or a model's counts are all zero (or it has no habits).
    """
    fn = "profile_similarity"
    if len(profiles) == 0:
        raise MetricError(f"{fn}: profiles is empty")
    habits = sorted({h for counts in profiles.values() for h in counts}, key=str)
    if not habits:
        raise MetricError(f"{fn} is undefined: no profile has any habit")
    models = list(profiles)
    units = []
    for m in models:
        counts = profiles[m]
        vec = as_scores([counts.get(h, 0) for h in habits], f"counts of {m!r}", fn)
        neg = np.flatnonzero(vec < 0)
        if neg.size:
            raise MetricError(f"{fn}: counts must be >= 0; {m!r} has {vec[neg[0]]:g} for {habits[neg[0]]!r}")
        units.append(_unit(vec, f"the profile of {m!r}", fn))
    out: dict[str, dict[str, float]] = {m: {} for m in models}
    for i, mi in enumerate(models):
        out[mi][mi] = 1.0
        for j in range(i + 1, len(models)):
            # One dot product per pair, mirrored, keeps the matrix exactly symmetric.
            r = min(1.0, max(-1.0, float(np.dot(units[i], units[j]))))
            out[mi][models[j]] = r
            out[models[j]][mi] = r
    return out
