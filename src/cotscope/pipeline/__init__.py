"""The stages, one implementation each, called by the CLI, the benchmarks and the Python API alike.

- :func:`generate`: prompts -> K samples per prompt under a strategy -> traces in the store (resumable).
- :func:`evaluate`: a judge or monitor over stored traces -> results keyed by (trace, evaluator, config, part).
- :func:`run_agent`: agent tasks -> episodes in sandboxes -> trajectory traces in the store (resumable).
- :func:`as_prm_evaluator` / :func:`best_of_n_from_store`: process reward scores per step of stored traces (through
  :func:`evaluate`), and best-of-N over the stored samples of each problem.
- :func:`safety_metrics`: Safe@1 / Safe@K / ConsSafe@K from every stored judge label of a store, by reasoning
  provenance, with reasoning that never finished (``incomplete``) counted apart; :func:`completion_metrics`: cap hits
  per model and strategy.
- :func:`guard_metrics`: what ``cotscope guard`` did with the traffic it recorded (decisions, monitor failures, stop
  points, latency).
- :func:`detection_metrics`: accuracy, AUROC, TPR at 1% / 5% FPR of every stored monitor on agent trajectories.

Stages report progress through the small :class:`Progress` protocol and never draw anything.
``generate``, ``evaluate`` and ``run_agent`` fan their work out when given ``ray=ADDRESS`` (or an
:class:`Executor`): workers build their own backends, the driver alone writes the store (``cotscope[ray]``;
Ray is imported only then).
"""

from cotscope._progress import NullProgress, Progress, ProgressTask
from cotscope.pipeline._agent import AgentStats, TaskOutcome, episode_row, run_agent
from cotscope.pipeline._annotate import (
    ANNOTATION_KIND,
    AnnotateStats,
    annotate,
    annotate_bel,
    annotate_mie,
    annotation_examples,
    annotation_item,
    as_annotation_evaluator,
)
from cotscope.pipeline._detection import POSITIVES, DetectionRow, detection_metrics
from cotscope.pipeline._evaluate import (
    Contexts,
    EvaluateStats,
    Evaluator,
    as_evaluator,
    evaluate,
    rebuilder,
    result_row,
    score_traces,
)
from cotscope.pipeline._executor import (
    RAY_ENV,
    Executor,
    ExecutorStats,
    InlineExecutor,
    WorkerJob,
    get_executor,
    node_url,
)
from cotscope.pipeline._generate import GenerateStats, Sampling, generate, plan_work
from cotscope.pipeline._metrics import (
    GROUP_BY,
    MIXED,
    CompletionRow,
    SafetyRow,
    TraceFacts,
    completion_metrics,
    safety_metrics,
    trace_facts,
)
from cotscope.pipeline._outcomes import (
    ANSWER_PARTS,
    DEFAULT_INCOMPLETE,
    FORM_TEXT,
    INCOMPLETE_FORMS,
    IncompleteForm,
    cap_hit,
    cap_reasons,
    check_incomplete_form,
    incomplete_result,
    is_incomplete,
    is_incomplete_result,
    verdict_from_reasoning,
)
from cotscope.pipeline._traffic import GUARD_ACTIONS, GuardRow, guard_metrics
from cotscope.pipeline._verify import BestOfNReport, as_prm_evaluator, best_of_n_from_store

__all__ = [
    "ANNOTATION_KIND",
    "ANSWER_PARTS",
    "DEFAULT_INCOMPLETE",
    "FORM_TEXT",
    "GROUP_BY",
    "GUARD_ACTIONS",
    "INCOMPLETE_FORMS",
    "MIXED",
    "POSITIVES",
    "RAY_ENV",
    "AgentStats",
    "AnnotateStats",
    "BestOfNReport",
    "CompletionRow",
    "Contexts",
    "DetectionRow",
    "EvaluateStats",
    "Evaluator",
    "Executor",
    "ExecutorStats",
    "GenerateStats",
    "GuardRow",
    "IncompleteForm",
    "InlineExecutor",
    "NullProgress",
    "Progress",
    "ProgressTask",
    "SafetyRow",
    "Sampling",
    "TaskOutcome",
    "TraceFacts",
    "WorkerJob",
    "annotate",
    "annotate_bel",
    "annotate_mie",
    "annotation_examples",
    "annotation_item",
    "as_annotation_evaluator",
    "as_evaluator",
    "as_prm_evaluator",
    "best_of_n_from_store",
    "cap_hit",
    "cap_reasons",
    "check_incomplete_form",
    "completion_metrics",
    "detection_metrics",
    "episode_row",
    "evaluate",
    "generate",
    "get_executor",
    "guard_metrics",
    "incomplete_result",
    "is_incomplete",
    "is_incomplete_result",
    "node_url",
    "plan_work",
    "rebuilder",
    "result_row",
    "run_agent",
    "safety_metrics",
    "score_traces",
    "trace_facts",
    "verdict_from_reasoning",
]
