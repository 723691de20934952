"""Inspect AI integration (``cotscope[inspect]``): cotscope's benchmarks as Inspect tasks, its thinking strategies
as solvers, every judge and monitor as a scorer and its metrics as Inspect metrics.

Installed with the extra, the package registers with Inspect through the ``inspect_ai`` entry point, so that
``inspect eval cotscope/safechain_strongreject --model vllm/...`` runs a benchmark (``cotscope/cuaharm``: the
agent loop in cotscope's sandbox) and
``scorer=cotscope/local_refusal`` (Python: ``scorer_for("local-refusal")()``) scores any Inspect task with a
cotscope judge. ``cotscope ingest`` of the resulting log stores the traces and the scores as results. See
docs/inspect.md.
"""

from cotscope.integrations.inspect._cuaharm import (
    cuaharm,
    cuaharm_agent,
    cuaharm_checker,
    cuaharm_rates,
    cuaharm_task,
    episode_messages,
)
from cotscope.integrations.inspect._metrics import (
    default_metrics,
    dtr,
    label_rate,
    misalignment_rate,
    safe_at_k_metric,
)
from cotscope.integrations.inspect._model import InspectModel
from cotscope.integrations.inspect._scorers import (
    SCORERS,
    Batcher,
    EvaluatorScorer,
    JudgeBackendError,
    JudgeParseError,
    build_evaluator,
    evaluator_scorer,
    judge,
    make_score,
    named_scorer,
    scorer_for,
    scorer_name,
)
from cotscope.integrations.inspect._solvers import (
    CONTEXT_KEY,
    deception_belief,
    lessthink,
    morethink,
    nothink,
    prefill,
    think_budget,
    thinking_strategy,
    zerothink,
)
from cotscope.integrations.inspect._tasks import NOT_TASKS, TASKS, benchmark, benchmark_task, plan_scorers, task_name
from cotscope.integrations.inspect._trace import state_sample, state_trace

__all__ = [
    "CONTEXT_KEY",
    "NOT_TASKS",
    "SCORERS",
    "TASKS",
    "Batcher",
    "EvaluatorScorer",
    "InspectModel",
    "JudgeBackendError",
    "JudgeParseError",
    "benchmark",
    "benchmark_task",
    "build_evaluator",
    "cuaharm",
    "cuaharm_agent",
    "cuaharm_checker",
    "cuaharm_rates",
    "cuaharm_task",
    "deception_belief",
    "default_metrics",
    "dtr",
    "episode_messages",
    "evaluator_scorer",
    "judge",
    "label_rate",
    "lessthink",
    "make_score",
    "misalignment_rate",
    "morethink",
    "named_scorer",
    "nothink",
    "plan_scorers",
    "prefill",
    "safe_at_k_metric",
    "scorer_for",
    "scorer_name",
    "state_sample",
    "state_trace",
    "task_name",
    "think_budget",
    "thinking_strategy",
    "zerothink",
]
