"""Pydantic v2 configuration models for CoT2 tasks, models, training and GRPO."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

_M = TypeVar("_M", bound=BaseModel)


class _Strict(BaseModel):
    # Unknown keys in a config file are almost always typos; fail loudly.
    model_config = ConfigDict(extra="forbid")


class MNNSConfig(_Strict):
    """Minimum non-negative sum task.

    The sequence layout is the paper's (and the official code's ``FourDigitsSoftDataset`` in
    ``train/continuous_train.py``): m - 1 continuous reasoning steps (the partial sums after digits
    1..m-1), then the answer at step m.

    Attributes:
        num_digits: Number of input digits m (the trace has m - 1 partial-sum steps, then the answer).
        digit_min: Smallest digit value.
        digit_max: Largest digit value.
        test_frac: Fraction of digit multisets held out for the test split.
        max_train: Optional cap on the number of training sequences (sub-sampled).
        max_test: Optional cap on the number of test sequences (sub-sampled).
    """

    # m = 1 would leave no reasoning step at all.
    num_digits: int = Field(default=4, ge=2, le=8)
    digit_min: int = Field(default=1, ge=0)
    digit_max: int = Field(default=9, ge=1)
    test_frac: float = Field(default=0.2, gt=0.0, lt=1.0)
    max_train: int | None = Field(default=None, ge=1)
    max_test: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _check_range(self) -> MNNSConfig:
        if self.digit_min > self.digit_max:
            raise ValueError("digit_min must be <= digit_max")
        return self


class GraphConfig(_Strict):
    """Layered random-DAG reachability task (ProsQA-style).

    Attributes:
        depth: Number of edges from the source to the candidate layer; the trace has depth - 1 steps.
        width: Vertices per layer.
        out_degree: Out-edges of every non-final vertex (fixed, so prompts have a fixed length).
        num_train: Training examples.
        num_test: Test examples.
    """

    depth: int = Field(default=3, ge=2, le=8)
    width: int = Field(default=4, ge=2, le=16)
    out_degree: int = Field(default=2, ge=1)
    num_train: int = Field(default=4000, ge=1)
    num_test: int = Field(default=500, ge=1)

    @model_validator(mode="after")
    def _check_degree(self) -> GraphConfig:
        if self.out_degree > self.width:
            raise ValueError("out_degree must be <= width")
        return self


class TaskConfig(_Strict):
    """Which task to build, and its parameters."""

    name: Literal["mnns", "graph"] = "mnns"
    mnns: MNNSConfig = Field(default_factory=MNNSConfig)
    graph: GraphConfig = Field(default_factory=GraphConfig)


class ModelConfig(_Strict):
    """GPT-2-style decoder size.

    Attributes:
        layers: Transformer blocks.
        heads: Attention heads per block (must divide ``dim``).
        dim: Embedding width d.
        mlp_ratio: Hidden width of the MLP as a multiple of ``dim``.
        tie_embeddings: Use the token embedding E as the output head (as GPT-2 does).
        dropout: Dropout probability (0 for these small synthetic tasks).
    """

    layers: int = Field(default=2, ge=1)
    heads: int = Field(default=2, ge=1)
    dim: int = Field(default=24, ge=2)
    mlp_ratio: int = Field(default=4, ge=1)
    tie_embeddings: bool = True
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _check_heads(self) -> ModelConfig:
        if self.dim % self.heads:
            raise ValueError(f"dim={self.dim} is not divisible by heads={self.heads}")
        return self


class TrainConfig(_Strict):
    """Supervised training (CSFT for CoT2, cross-entropy for discrete CoT).

    Attributes:
        task: Task settings.
        model: Model size.
        method: ``csft`` (continuous tokens) or ``discrete`` (one-hot tokens, the B=1 trace).
        budget: CSFT budget B: the number of target traces mixed into alpha*; None means all paths.
        feed: What the model reads at reasoning steps during training: ``teacher`` (E^T alpha*),
            ``self`` (its own softmax), or ``curriculum`` (teacher with a probability decaying 1 -> 0).
        epochs: Passes over the training set.
        batch_size: Examples per optimiser step.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_frac: Fraction of steps with linear learning-rate warm-up (cosine decay after).
        grad_clip: Gradient-norm clip.
        seed: Seed for data split, initialisation and sampling.
        device: ``cpu``, ``cuda`` or ``auto``.
        threads: torch CPU threads (the machines here are shared; keep it small).
        pass_k: Largest k of the discrete pass@k curve (n = pass_k samples per test prompt).
        eval_every: Evaluate on the test split every this many epochs (and at the last one).
    """

    task: TaskConfig = Field(default_factory=TaskConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    method: Literal["csft", "discrete"] = "csft"
    budget: int | None = Field(default=None, ge=1)
    feed: Literal["teacher", "self", "curriculum"] = "teacher"
    epochs: int = Field(default=50, ge=1)
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=3e-3, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    warmup_frac: float = Field(default=0.05, ge=0, lt=1)
    grad_clip: float = Field(default=1.0, gt=0)
    seed: int = 0
    device: Literal["cpu", "cuda", "auto"] = "auto"
    threads: int = Field(default=1, ge=1)
    pass_k: int = Field(default=16, ge=1)
    eval_every: int = Field(default=5, ge=1)


class GRPOConfig(_Strict):
    """GRPO fine-tuning of a supervised checkpoint with CoT2 sampling.

    Attributes:
        sampling: ``mts`` (K tokens per step, mean embedding fed back) or ``dirichlet``.
        k: Tokens per step for multi-token sampling (K = 1 is discrete CoT).
        mts_ratio: Policy ratio of an MTS step. ``geometric`` (the paper's definition, the default):
            K tokens drawn from softmax(z), ratio = geometric mean of the K per-token ratios.
            ``official``: the official code's default (``sampling_normalization=true`` in
            ``train/continuous_train_grpo_mts.py``): K tokens drawn from softmax(z / K), ratio = product of
            the K per-token ratios under softmax(z / K). Sampled-policy evaluation uses the same form.
        dirichlet: Dirichlet form. ``scaled``: alpha-hat ~ Dir(gamma * softmax(z) + 1e-3) over the whole
            vocabulary. ``official`` (``train/continuous_train_grpo_dirichlet.py``): scale 1 over the
            tokens with probability >= 1e-3, those probabilities clamped to >= 1e-3 and renormalised
            (``gamma`` is not used).
        gamma: Dirichlet scale of the ``scaled`` form: alpha-hat ~ Dir(gamma * alpha).
        group_size: Rollouts per prompt (G).
        prompts_per_step: Prompts per GRPO step.
        steps: GRPO steps.
        inner_epochs: Policy updates per batch of rollouts (the ratio differs from 1 after the first).
        clip_eps: Clipping epsilon of the surrogate.
        kl_coef: Weight of the KL to the frozen reference (0 disables it).
        lr: Adam learning rate.
        grad_clip: Gradient-norm clip.
        eval_samples: Sampled rollouts per test prompt when scoring the sampling policy.
        seed: Seed.
        device: ``cpu``, ``cuda`` or ``auto``.
        threads: torch CPU threads.
    """

    sampling: Literal["mts", "dirichlet"] = "mts"
    k: int = Field(default=3, ge=1)
    mts_ratio: Literal["geometric", "official"] = "geometric"
    dirichlet: Literal["scaled", "official"] = "scaled"
    gamma: float = Field(default=20.0, gt=0)
    group_size: int = Field(default=8, ge=2)
    prompts_per_step: int = Field(default=32, ge=1)
    steps: int = Field(default=200, ge=1)
    inner_epochs: int = Field(default=2, ge=1)
    clip_eps: float = Field(default=0.1, gt=0, lt=1)
    kl_coef: float = Field(default=0.0, ge=0)
    lr: float = Field(default=1e-4, gt=0)
    grad_clip: float = Field(default=1.0, gt=0)
    eval_samples: int = Field(default=4, ge=1)
    seed: int = 0
    device: Literal["cpu", "cuda", "auto"] = "auto"
    threads: int = Field(default=1, ge=1)


def load_config(path: str | Path, cls: type[_M]) -> _M:
    """Load a config model from a YAML or JSON file.

    Args:
        path: ``.yaml``/``.yml`` or ``.json`` file.
        cls: The pydantic model class to validate into (e.g. ``TrainConfig``).

    Returns:
        The validated config.
    """
    p = Path(path)
    text = p.read_text()
    data: Any = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    return cls.model_validate(data or {})


def resolve_device(device: str) -> str:
    """Map ``auto`` to ``cuda`` when a GPU is visible, else ``cpu``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
