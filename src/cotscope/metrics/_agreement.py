"""Agreement of a judge's labels with human labels."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cotscope.metrics._errors import MetricError, as_labels, as_scores, same_length


def _pair(pred: ArrayLike, human: ArrayLike, fn: str) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    p = as_labels(pred, "pred", fn)
    h = as_labels(human, "human", fn)
    same_length(fn, pred=p, human=h)
    return p, h


def _counts(p: NDArray[np.bool_], h: NDArray[np.bool_]) -> tuple[int, int, int, int]:
    """``(tp, fp, fn, tn)`` with ``True`` as the positive class."""
    tp = int(np.sum(p & h))
    fp = int(np.sum(p & ~h))
    fn = int(np.sum(~p & h))
    return tp, fp, fn, len(p) - tp - fp - fn


def accuracy(pred: ArrayLike, human: ArrayLike) -> float:
    """Share of items where the judge's label equals the human label.

    Args:
        pred: The judge's labels, booleans or 0/1 ints.
        human: The human labels, same length.

    Returns:
        ``mean(pred == human)``.

    Raises:
        MetricError: If the inputs are empty, of different lengths, or not labels.
    """
    p, h = _pair(pred, human, "accuracy")
    return float(np.mean(p == h))


def precision(pred: ArrayLike, human: ArrayLike) -> float:
    """Precision of the positive class (``True``): ``tp / (tp + fp)``.

    Args:
        pred: The judge's labels, booleans or 0/1 ints.
        human: The human labels, same length.

    Returns:
        The precision in ``[0, 1]``.

    Raises:
        MetricError: As :func:`accuracy`, and if the judge predicts no positive
            (0/0 is undefined; it is not reported as 0).
    """
    p, h = _pair(pred, human, "precision")
    tp, fp, _, _ = _counts(p, h)
    if tp + fp == 0:
        raise MetricError("precision is undefined: pred has no positive labels")
    return tp / (tp + fp)


def recall(pred: ArrayLike, human: ArrayLike) -> float:
    """Recall of the positive class (``True``): ``tp / (tp + fn)``.

    Args:
        pred: The judge's labels, booleans or 0/1 ints.
        human: The human labels, same length.

    Returns:
        The recall in ``[0, 1]``.

    Raises:
        MetricError: As :func:`accuracy`, and if the human labels have no positive.
    """
    p, h = _pair(pred, human, "recall")
    tp, _, fn, _ = _counts(p, h)
    if tp + fn == 0:
        raise MetricError("recall is undefined: human has no positive labels")
    return tp / (tp + fn)


def f1_score(pred: ArrayLike, human: ArrayLike) -> float:
    """F1 of the positive class (``True``): ``2 tp / (2 tp + fp + fn)``.

    This form equals the harmonic mean of precision and recall when both are
    defined, and stays defined (as 0) when only one side has positives.

    Args:
        pred: The judge's labels, booleans or 0/1 ints.
        human: The human labels, same length.

    Returns:
        The F1 score in ``[0, 1]``.

    Raises:
        MetricError: As :func:`accuracy`, and if neither side has a positive label.
    """
    p, h = _pair(pred, human, "f1_score")
    tp, fp, fn, _ = _counts(p, h)
    if tp + fp + fn == 0:
        raise MetricError("f1_score is undefined: neither pred nor human has a positive label")
    return 2 * tp / (2 * tp + fp + fn)


def cohens_kappa(pred: ArrayLike, human: ArrayLike) -> float:
    """Cohen's kappa: agreement corrected for the agreement expected by chance.

    ``kappa = (p_o - p_e) / (1 - p_e)`` with ``p_o`` the observed agreement and
    ``p_e = P(pred) P(human) + P(not pred) P(not human)`` from the marginals.
    It is 1 for identical labels, 0 for chance-level agreement, negative below.

    Args:
        pred: The judge's labels, booleans or 0/1 ints.
        human: The human labels, same length.

    Returns:
        Kappa in ``[-1, 1]``.

    Raises:
        MetricError: As :func:`accuracy`, and if both raters give every item the
            same single label (``p_e = 1``, so kappa is 0/0).
    """
    p, h = _pair(pred, human, "cohens_kappa")
    tp, fp, fn, tn = _counts(p, h)
    n = len(p)
    # Scaled by n**2 and kept in ints, so identical labels give exactly 1 and chance exactly 0.
    chance = (tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)
    if chance == n * n:
        raise MetricError("cohens_kappa is undefined: both raters give every item the same label")
    return (n * (tp + tn) - chance) / (n * n - chance)


def pearson(x: ArrayLike, y: ArrayLike) -> float:
    """Pearson correlation of two score vectors (continuous, or 0/1 where it is the phi coefficient).

    Args:
        x: Finite real numbers (booleans are read as 0/1).
        y: Finite real numbers, same length.

    Returns:
        The correlation in ``[-1, 1]``.

    Raises:
        MetricError: If the inputs are empty or of different lengths, hold NaN
            or infinite values (the message names the index), have fewer than two
            items, or either one is constant (zero variance makes it 0/0).
    """
    a = as_scores(x, "x", "pearson")
    b = as_scores(y, "y", "pearson")
    n = same_length("pearson", x=a, y=b)
    if n < 2:
        raise MetricError("pearson needs at least 2 items; got 1")
    for name, v in (("x", a), ("y", b)):
        if np.all(v == v[0]):
            raise MetricError(f"pearson is undefined: {name} is constant")
    da = a - a.mean()
    db = b - b.mean()
    # Scale before squaring so large scores cannot overflow the sums of squares.
    da /= np.max(np.abs(da))
    db /= np.max(np.abs(db))
    r = float(np.dot(da, db) / math.sqrt(float(np.dot(da, da)) * float(np.dot(db, db))))
    return min(1.0, max(-1.0, r))


def agreement(pred: ArrayLike, human: ArrayLike) -> dict[str, float]:
    """Every agreement metric of a judge against human labels at once.

    Args:
        pred: The judge's labels, booleans or 0/1 ints.
        human: The human labels, same length.

    Returns:
        ``{"accuracy", "precision", "recall", "f1", "kappa", "pearson"}``. A metric
        that is undefined for these labels (for example precision when the judge
        never says ``True``, or pearson when a side is constant) is ``nan`` here
        so the other metrics can still be reported; it is never 0. Call the
        single metric to get the MetricError explaining why.

    Raises:
        MetricError: If the inputs are empty, of different lengths, or not labels.
    """
    p, h = _pair(pred, human, "agreement")
    out: dict[str, float] = {}
    for key, metric in (
        ("accuracy", accuracy),
        ("precision", precision),
        ("recall", recall),
        ("f1", f1_score),
        ("kappa", cohens_kappa),
        ("pearson", pearson),
    ):
        try:
            out[key] = metric(p, h)
        except MetricError:  # inputs are already valid, so this is only "undefined here"
            out[key] = math.nan
    return out
