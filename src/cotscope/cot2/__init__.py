"""Continuous chain of thought (CoT2; Gozeten et al. 2025) trained from scratch.

Tasks with exact solvers (MNNS, graph reachability), a GPT-2-style decoder that reads continuous
tokens E^T alpha, CSFT and discrete-CoT training, multi-token and Dirichlet sampling, and GRPO.
"""

from cotscope.cot2._config import GraphConfig, GRPOConfig, MNNSConfig, ModelConfig, TaskConfig, TrainConfig, load_config
from cotscope.cot2._discrete import pass_at_k, pass_at_k_curve
from cotscope.cot2._eval import eval_continuous, eval_greedy, eval_pass_at_k, eval_sampling
from cotscope.cot2._model import CoT2Model
from cotscope.cot2._sampling import DirichletForm, MTSRatio
from cotscope.cot2._tasks import GraphTask, MNNSTask, Task, make_task
from cotscope.cot2._train import TrainResult, evaluate_run, load_checkpoint, run_grpo, save_checkpoint, train

__all__ = [
    "CoT2Model",
    "DirichletForm",
    "GRPOConfig",
    "GraphConfig",
    "GraphTask",
    "MNNSConfig",
    "MNNSTask",
    "MTSRatio",
    "ModelConfig",
    "Task",
    "TaskConfig",
    "TrainConfig",
    "TrainResult",
    "eval_continuous",
    "eval_greedy",
    "eval_pass_at_k",
    "eval_sampling",
    "evaluate_run",
    "load_checkpoint",
    "load_config",
    "make_task",
    "pass_at_k",
    "pass_at_k_curve",
    "run_grpo",
    "save_checkpoint",
    "train",
]
