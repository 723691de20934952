"""Process verification (URSA): steps, process reward models, aggregation, best-of-N and answer checking.

A solution is split into steps (URSA's ``Step k:`` lines and ``†Answer:``, or free-form reasoning); a process
reward model scores each step (:func:`get_prm`: a token-classification checkpoint read at a step tag as URSA-RM
is, an LLM judge rating each step, or a small PRM trained here); the step scores are aggregated (``min``,
``mean`` as URSA's code does, ``last``, ``product``) and used to pick one of N sampled solutions, against
majority vote and a random pick (:func:`best_of_n`). Storing scores and reading pools go through the pipeline
(``cotscope.pipeline.as_prm_evaluator``, ``best_of_n_from_store``).
"""

from cotscope.verify._aggregate import RULES, Rule, aggregate
from cotscope.verify._answers import answers_match, extract_answer, normalize_answer
from cotscope.verify._bestofn import BASELINES, BestOfNRow, Form, Pool, Sample, best_of_n
from cotscope.verify._prm import (
    LLMJudgePRM,
    PRMError,
    PRMInput,
    ProcessRewardModel,
    StepScores,
    TokenClassificationPRM,
    get_prm,
    prm,
    prm_names,
    prm_text,
    tagged_solution,
)
from cotscope.verify._steps import (
    STEP_TAG,
    SolutionSteps,
    format_steps,
    prm_input,
    split_steps,
    tag_steps,
    trace_steps,
)
from cotscope.verify._ursa_data import UrsaItem, ursa_mathvista

__all__ = [
    "BASELINES",
    "RULES",
    "STEP_TAG",
    "BestOfNRow",
    "Form",
    "LLMJudgePRM",
    "PRMError",
    "PRMInput",
    "Pool",
    "ProcessRewardModel",
    "Rule",
    "Sample",
    "SolutionSteps",
    "StepScores",
    "TokenClassificationPRM",
    "UrsaItem",
    "aggregate",
    "answers_match",
    "best_of_n",
    "extract_answer",
    "format_steps",
    "get_prm",
    "normalize_answer",
    "prm",
    "prm_input",
    "prm_names",
    "prm_text",
    "split_steps",
    "tag_steps",
    "tagged_solution",
    "trace_steps",
    "ursa_mathvista",
]
