"""The metric error and the input checks every metric shares.

Every public metric validates its inputs here so that empty inputs, NaN and
malformed labels fail loudly with the same kind of message instead of
propagating as a silent 0 or NaN.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cotscope.errors import DataError


class MetricError(DataError):
    """A metric that cannot be computed from its inputs.

    Raised for empty inputs, NaN or infinite scores, labels that are not
    booleans or 0/1 ints, mismatched lengths, and quantities that are
    undefined for the given data (for example AUROC with a single class).
    """


def as_1d(values: Any, name: str, fn: str) -> NDArray[Any]:
    """``values`` as a non-empty 1-D array, or a MetricError naming ``fn`` and ``name``."""
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError) as exc:  # ragged nested lists land here
        raise MetricError(f"{fn}: {name} cannot be read as a 1-D array ({exc})") from exc
    if arr.ndim != 1:
        raise MetricError(f"{fn}: {name} must be 1-D; got an array of shape {arr.shape}")
    if arr.size == 0:
        raise MetricError(f"{fn}: {name} is empty")
    return arr


def as_labels(values: Any, name: str, fn: str) -> NDArray[np.bool_]:
    """``values`` as a boolean array; only booleans and the ints 0 and 1 are accepted.

    Floats are refused even when they equal 0.0 or 1.0: a float label usually
    means a score was passed where a label was meant.
    """
    arr = as_1d(values, name, fn)
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind in "iu":
        bad = np.flatnonzero((arr != 0) & (arr != 1))
        if bad.size:
            i = int(bad[0])
            raise MetricError(f"{fn}: {name} must be booleans or 0/1 ints; got {arr[i].item()!r} at index {i}")
        return arr.astype(np.bool_)
    if arr.dtype == object:
        out = np.empty(arr.size, dtype=np.bool_)
        for i, v in enumerate(arr):
            if isinstance(v, bool | np.bool_):
                out[i] = bool(v)
            elif isinstance(v, int | np.integer) and v in (0, 1):
                out[i] = v == 1
            else:
                raise MetricError(f"{fn}: {name} must be booleans or 0/1 ints; got {v!r} at index {i}")
        return out
    raise MetricError(f"{fn}: {name} must be booleans or 0/1 ints; got {arr[0].item()!r} ({arr.dtype}) at index 0")


def as_scores(values: Any, name: str, fn: str) -> NDArray[np.float64]:
    """``values`` as a finite float array; NaN and infinities are refused with their index.

    Infinities are refused too, not only NaN: thresholds, interpolated
    percentiles and the ROC end point (everything caught at ``-inf``) all
    assume finite scores. Clip scores such as ``-inf`` log-probabilities first.
    """
    arr = as_1d(values, name, fn)
    if arr.dtype.kind not in "biuf":
        if arr.dtype != object:
            raise MetricError(f"{fn}: {name} must be real numbers; got dtype {arr.dtype}")
        for i, v in enumerate(arr):
            # numbers.Real excludes str, so "1.5" is refused rather than parsed.
            if not isinstance(v, numbers.Real):
                raise MetricError(f"{fn}: {name} must be real numbers; got {v!r} at index {i}")
    out = arr.astype(np.float64)
    nan = np.flatnonzero(np.isnan(out))
    if nan.size:
        raise MetricError(f"{fn}: {name} contains NaN at index {int(nan[0])}")
    inf = np.flatnonzero(np.isinf(out))
    if inf.size:
        raise MetricError(f"{fn}: {name} contains an infinite value at index {int(inf[0])}")
    return out


def same_length(fn: str, **arrays: NDArray[Any]) -> int:
    """The common length of ``arrays``, or a MetricError listing every length."""
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        raise MetricError(f"{fn}: inputs must have the same length; {shown}")
    return next(iter(lengths.values()))


def as_real(value: Any, name: str, fn: str, *, low: float, high: float) -> float:
    """A finite real scalar in the closed range ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise MetricError(f"{fn}: {name} must be a real number; got {value!r}")
    x = float(value)
    if math.isnan(x) or not low <= x <= high:
        raise MetricError(f"{fn}: {name} must be in [{low:g}, {high:g}]; got {value!r}")
    return x


def as_alpha(value: Any, fn: str) -> float:
    """A significance level strictly between 0 and 1."""
    alpha = as_real(value, "alpha", fn, low=0.0, high=1.0)
    if alpha in (0.0, 1.0):
        raise MetricError(f"{fn}: alpha must be strictly between 0 and 1; got {value!r}")
    return alpha


def as_count(value: Any, name: str, fn: str) -> int:
    """A non-negative integer (bools and integral floats are refused)."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise MetricError(f"{fn}: {name} must be an int; got {value!r}")
    if value < 0:
        raise MetricError(f"{fn}: {name} must be >= 0; got {value!r}")
    return int(value)
