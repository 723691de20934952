"""The declarative benchmark spec: data + prompt template + generation settings + judges + metrics.

A spec is a YAML file validated by :class:`BenchmarkSpec`. The shipped specs live in
``cotscope/benchmarks/specs/``; a user's own spec is any YAML file of the same shape
(``cotscope run path/to/spec.yaml``), so adding a benchmark needs no code as long as it uses one of
the registered loaders and one of the metric kinds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from cotscope.errors import ConfigError
from cotscope.traces import TracePart

#: How the metrics stage reads the judged traces; each kind is one family of the papers' metrics.
Kind = Literal["safechain", "thought-crime", "backdoor", "deceptionbench", "cogtest", "agreement", "cuaharm", "generic"]

#: What a judge's verdicts are used for by the metrics stage.
Role = Literal["safety", "misalignment", "monitor", "articulation", "consistency", "habit", "other"]


class DataSpec(BaseModel):
    """Where the items come from.

    Attributes:
        loader: a registered loader name (see :func:`cotscope.benchmarks.loader_names`).
        path: a local file or folder; ``None`` reads the copy shipped in the package (when there is one).
            A relative path in a user's YAML file is resolved against the file's folder.
        hf: the Hugging Face ``datasets.load_dataset`` arguments of the original data, used only with
            ``--hub`` by users who have the network.
        options: loader-specific settings (e.g. the backdoor trigger lines).
    """

    model_config = ConfigDict(extra="forbid")

    loader: str
    path: str | None = None
    hf: dict[str, Any] | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class GenerationSpec(BaseModel):
    """How responses are sampled.

    Attributes:
        strategies: decoding strategies (``normal``, ``zerothink``, ``lessthink``, ``morethink``,
            ``nothink``, ``prefill:TEXT``); ``prefill`` below is a shorthand for one more.
        samples: K responses per prompt and strategy.
        temperature: sampling temperature.
        top_p: nucleus sampling.
        max_tokens: generation budget per response.
        prefill: when set, the strategies are replaced by ``prefill:<this text>``.
        seed: base sampling seed; sample k is requested with ``seed + k`` (``None``: unseeded).
    """

    model_config = ConfigDict(extra="forbid")

    strategies: list[str] = Field(default_factory=lambda: ["normal"])
    samples: int = Field(default=1, ge=1)
    temperature: float = Field(default=0.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(default=1024, ge=1)
    prefill: str | None = None
    seed: int | None = 0

    def strategy_specs(self) -> list[str]:
        """The strategy strings to run, with ``prefill`` folded in."""
        if self.prefill:
            return ["prefill:" + self.prefill]
        return list(self.strategies)


class AgentSpec(BaseModel):
    """How an agent benchmark runs its episodes (``kind: cuaharm``).

    Attributes:
        sandbox: the sandbox provider (``namespace``, ``docker``).
        sandbox_options: the provider's options (e.g. ``rootfs``).
        max_steps: model calls per episode (the paper: 15).
        history: previous observation/response pairs sent per step (the paper: 3).
        command_timeout_s: wall time of one command.
        episode_timeout_s: wall time of one episode.
        concurrency: episodes at once.
    """

    model_config = ConfigDict(extra="forbid")

    sandbox: str = "namespace"
    sandbox_options: dict[str, Any] = Field(default_factory=dict)
    max_steps: int = Field(default=15, ge=1)
    history: int = Field(default=3, ge=0)
    command_timeout_s: float = Field(default=60.0, gt=0)
    episode_timeout_s: float = Field(default=900.0, gt=0)
    concurrency: int = Field(default=4, ge=1)


class JudgeSpec(BaseModel):
    """One judge (or monitor) to run on the generated traces.

    Attributes:
        name: a registered judge name (``refusal-strings``, ``llama-guard``, ``em-alignment``, ...) or a
            benchmark-internal judge (``deception-consistency``, ``cogtest-habit``).
        part: which part of each trace it reads: ``reasoning``, ``answer`` or ``both``.
        role: what the metrics stage uses the verdicts for.
        fallback: an embedded judge (no judge model needed) used instead when no ``--judge-model`` is
            given and ``name`` needs one.
        only_if: run only on traces whose verdict of this role is true (Thought Crime's CoT monitor runs
            on misaligned answers only).
        options: judge options (e.g. ``threshold``).
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    part: TracePart = "answer"
    role: Role = "safety"
    fallback: str | None = None
    only_if: Role | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class BenchmarkSpec(BaseModel):
    """A whole benchmark.

    Attributes:
        name: the registry name (``cotscope run NAME``).
        kind: which metrics family applies.
        description: one line for ``cotscope benchmarks``.
        source: the paper and data provenance, one line.
        data: where the items come from.
        limit: keep only the first N items (a built-in slice; ``--limit`` overrides it).
        template: how an item's text becomes the user message; ``{prompt}`` is the item text.
        system_prompt: a system message put before every item that has none of its own.
        generation: sampling settings.
        agent: episode settings of an agent benchmark.
        judges: what to run on the traces.
        metrics: names of the metrics reported (documentation and report order).
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: Kind = "generic"
    description: str = ""
    source: str = ""
    data: DataSpec
    limit: int | None = Field(default=None, ge=1)
    template: str = "{prompt}"
    system_prompt: str | None = None
    generation: GenerationSpec = Field(default_factory=GenerationSpec)
    agent: AgentSpec | None = None
    judges: list[JudgeSpec] = Field(default_factory=list)
    metrics: list[str] = Field(default_factory=list)

    @field_validator("template")
    @classmethod
    def _template_has_prompt(cls, v: str) -> str:
        # A template without the item text would silently send the same prompt for every item.
        if "{prompt}" not in v:
            raise ValueError("template must contain {prompt}")
        return v

    def render(self, text: str) -> str:
        """The user message of one item: the template with ``{prompt}`` replaced (no other braces read)."""
        return self.template.replace("{prompt}", text)


def load_spec(path: str | Path) -> BenchmarkSpec:
    """Read and validate one spec YAML file; a relative ``data.path`` is resolved against its folder.

    Raises:
        FileNotFoundError: no such file.
        ConfigError: the file is not YAML, not a mapping, or does not validate (pydantic's message, with
            the file); a ``ValueError``.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such benchmark spec file")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: a benchmark spec must be a YAML mapping")
    try:
        spec = BenchmarkSpec.model_validate(raw)
    except Exception as e:  # pydantic.ValidationError; re-raised with the file name for the CLI
        raise ConfigError(f"{p}: invalid benchmark spec: {e}") from None
    if spec.data.path and not Path(spec.data.path).is_absolute():
        spec.data.path = str((p.parent / spec.data.path).resolve())
    return spec
