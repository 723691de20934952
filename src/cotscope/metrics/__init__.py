"""Pure metric functions for chain-of-thought safety and for validating monitors and judges.

Every function validates its inputs and raises :class:`MetricError` (a
``ValueError``) for empty inputs, NaN or infinite scores (naming the index),
labels that are not booleans or 0/1 ints, and quantities undefined for the
data; none of them returns a silent 0. See ``docs/metrics.md``.
"""

from cotscope.metrics._agreement import (
    accuracy,
    agreement,
    cohens_kappa,
    f1_score,
    pearson,
    precision,
    recall,
)
from cotscope.metrics._deception import deception_tendency_rate, dtr_by_category
from cotscope.metrics._detection import DEFAULT_FPRS, DetectionMetrics, detection_metrics, fpr_key
from cotscope.metrics._errors import MetricError
from cotscope.metrics._intervals import Interval, bootstrap_ci, proportion_ci
from cotscope.metrics._monitor import (
    RocCurve,
    audit_threshold,
    catch_rate,
    roc_auc,
    roc_curve,
    threshold_at_fpr,
    tpr_at_fpr,
)
from cotscope.metrics._profiles import cosine_similarity, profile_similarity
from cotscope.metrics._safechain import (
    SAFE_IF_TRUE,
    UNSAFE_IF_TRUE,
    both_safe_at_k,
    both_safe_rate,
    safe_at_k,
    safe_from_label,
)

__all__ = [
    "DEFAULT_FPRS",
    "SAFE_IF_TRUE",
    "UNSAFE_IF_TRUE",
    "DetectionMetrics",
    "Interval",
    "MetricError",
    "RocCurve",
    "accuracy",
    "agreement",
    "audit_threshold",
    "bootstrap_ci",
    "both_safe_at_k",
    "both_safe_rate",
    "catch_rate",
    "cohens_kappa",
    "cosine_similarity",
    "deception_tendency_rate",
    "detection_metrics",
    "dtr_by_category",
    "f1_score",
    "fpr_key",
    "pearson",
    "precision",
    "profile_similarity",
    "proportion_ci",
    "recall",
    "roc_auc",
    "roc_curve",
    "safe_at_k",
    "safe_from_label",
    "threshold_at_fpr",
    "tpr_at_fpr",
]
