"""Continuous chain of thought (CoT2; Gozeten et al. 2025) trained from scratch.

Tasks with exact solvers (MNNS, graph reachability), a GPT-2-style decoder that reads continuous
tokens E^T alpha, CSFT and discrete-CoT training, multi-token and Dirichlet sampling, and GRPO.
"""

from cotscope.cot2._config import (
    GraphConfig,
    GRPOConfig,
    MNNSConfig,
    ModelConfig,
    TaskConfig,
    TrainConfig,
    load_config,
    resolve_device,
)
from cotscope.cot2._csft import CSFTLoss, csft_loss, fed_logits, teacher_forced_logits
from cotscope.cot2._discrete import decode_discrete, pass_at_k, pass_at_k_curve
from cotscope.cot2._eval import eval_continuous, eval_greedy, eval_pass_at_k, eval_sampling
from cotscope.cot2._grpo import GRPOHistory, clipped_surrogate, group_advantages, grpo_train, kl_to_reference
from cotscope.cot2._model import CoT2Model
from cotscope.cot2._sampling import (
    Rollout,
    decode_continuous,
    dirichlet_concentration,
    dirichlet_log_prob,
    mts_log_prob,
    rollout_log_probs,
    sample_log_dirichlet,
    sample_rollouts,
)
from cotscope.cot2._tasks import (
    GraphInstance,
    GraphTask,
    MNNSTask,
    Task,
    TaskData,
    Vocab,
    is_reachable,
    make_task,
    mnns_brute_force,
    mnns_solve,
    multiset_key,
    reachable_sets,
)
from cotscope.cot2._train import (
    TrainResult,
    build_model,
    evaluate_run,
    load_checkpoint,
    run_grpo,
    save_checkpoint,
    teacher_prob,
    train,
)

__all__ = [
    "CSFTLoss",
    "CoT2Model",
    "GRPOConfig",
    "GRPOHistory",
    "GraphConfig",
    "GraphInstance",
    "GraphTask",
    "MNNSConfig",
    "MNNSTask",
    "ModelConfig",
    "Rollout",
    "Task",
    "TaskConfig",
    "TaskData",
    "TrainConfig",
    "TrainResult",
    "Vocab",
    "build_model",
    "clipped_surrogate",
    "csft_loss",
    "decode_continuous",
    "decode_discrete",
    "dirichlet_concentration",
    "dirichlet_log_prob",
    "eval_continuous",
    "eval_greedy",
    "eval_pass_at_k",
    "eval_sampling",
    "evaluate_run",
    "fed_logits",
    "group_advantages",
    "grpo_train",
    "is_reachable",
    "kl_to_reference",
    "load_checkpoint",
    "load_config",
    "make_task",
    "mnns_brute_force",
    "mnns_solve",
    "mts_log_prob",
    "multiset_key",
    "pass_at_k",
    "pass_at_k_curve",
    "reachable_sets",
    "resolve_device",
    "rollout_log_probs",
    "run_grpo",
    "sample_log_dirichlet",
    "sample_rollouts",
    "save_checkpoint",
    "teacher_forced_logits",
    "teacher_prob",
    "train",
]
