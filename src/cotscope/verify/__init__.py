"""Process verification (URSA): steps, process reward models, aggregation, best-of-N and answer checking.

A solution is split into steps (URSA's ``Step k:`` lines and ``†Answer:``, or free-form reasoning); a process
reward model scores each step (:func:`get_prm`: a token-classification checkpoint read at a step tag as URSA-RM
is, an LLM judge rating each step, or a small PRM trained here); the step scores are aggregated (``min``,
``mean`` as URSA's code does, ``last``, ``product``) and used to pick one of N sampled solutions, against
majority vote and a random pick (:func:`best_of_n`). Storing scores and reading pools go through the pipeline
(``cotscope.pipeline.as_prm_evaluator``, ``best_of_n_from_store``). Process annotations come from URSA's two
engines, binary error locating and misinterpretation insertion (``cotscope.pipeline.annotate``); a small PRM
trains on the CPU from them (:func:`train_prm`), on synthetic arithmetic problems (:func:`synth_problems`).
"""

from cotscope.verify._aggregate import RULES, Rule, aggregate
from cotscope.verify._annotate import (
    AnnotateItem,
    Annotation,
    BinaryErrorLocator,
    MisinterpretationInserter,
    bel_max_calls,
    labels_from_first_error,
)
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
from cotscope.verify._synth import (
    OPERATIONS,
    Problem,
    oracle_step_labels,
    problem_messages,
    problem_prompt,
    read_problems,
    synth_problems,
    write_problems,
    write_prompts,
)
from cotscope.verify._train import (
    PRMExample,
    TrainStats,
    base_model_path,
    evaluate_prm_examples,
    examples_hash,
    read_examples,
    train_prm,
    write_examples,
)
from cotscope.verify._ursa_data import UrsaItem, ursa_mathvista

__all__ = [
    "BASELINES",
    "OPERATIONS",
    "RULES",
    "STEP_TAG",
    "AnnotateItem",
    "Annotation",
    "BestOfNRow",
    "BinaryErrorLocator",
    "Form",
    "LLMJudgePRM",
    "MisinterpretationInserter",
    "PRMError",
    "PRMExample",
    "PRMInput",
    "Pool",
    "Problem",
    "ProcessRewardModel",
    "Rule",
    "Sample",
    "SolutionSteps",
    "StepScores",
    "TokenClassificationPRM",
    "TrainStats",
    "UrsaItem",
    "aggregate",
    "answers_match",
    "base_model_path",
    "bel_max_calls",
    "best_of_n",
    "evaluate_prm_examples",
    "examples_hash",
    "extract_answer",
    "format_steps",
    "get_prm",
    "labels_from_first_error",
    "normalize_answer",
    "oracle_step_labels",
    "prm",
    "prm_input",
    "prm_names",
    "prm_text",
    "problem_messages",
    "problem_prompt",
    "read_examples",
    "read_problems",
    "split_steps",
    "synth_problems",
    "tag_steps",
    "tagged_solution",
    "trace_steps",
    "train_prm",
    "ursa_mathvista",
    "write_examples",
    "write_problems",
    "write_prompts",
]
