"""The run plan: what one ``cotscope run`` generates and judges, stored with the run so that metrics and
the report can be recomputed from the store alone (even for a spec that came from a user's YAML file)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from cotscope.benchmarks._loaders import Item
from cotscope.benchmarks._spec import BenchmarkSpec, JudgeSpec
from cotscope.metrics import safe_from_label


class PlanItem(BaseModel):
    """One item with its rendered prompt and the trace group of each strategy.

    Attributes:
        groups: strategy name -> group id of the K samples (derived from prompt, model and strategy).
        belief_group: DeceptionBench: the group id of the belief-phase response.
    """

    id: str
    category: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    messages: list[dict[str, Any]]
    groups: dict[str, str] = Field(default_factory=dict)
    belief_messages: list[dict[str, Any]] | None = None
    belief_group: str | None = None


class PlanJudge(BaseModel):
    """A judge as it was resolved for this run.

    Attributes:
        spec: the spec entry.
        name: the judge that actually ran (the fallback's name when the fallback was used).
        fallback_used: the spec's judge needed a judge model that was not given.
        keys: ``category -> [evaluator, config_hash]``; ``"*"`` for judges that do not depend on it
            (CogTest runs one evaluator per habit).
        skipped: why the judge did not run, or ``None``.
    """

    spec: JudgeSpec
    name: str
    fallback_used: bool = False
    label_meaning: str | None = None
    keys: dict[str, list[str]] = Field(default_factory=dict)
    skipped: str | None = None

    def safe(self, label: bool) -> bool:
        """A label turned into "safe" by the one rule of :func:`cotscope.metrics.safe_from_label`."""
        return safe_from_label(label, self.label_meaning)

    @property
    def part(self) -> str:
        """The trace part it reads."""
        return self.spec.part

    @property
    def role(self) -> str:
        """What its verdicts are used for."""
        return self.spec.role

    def key(self, category: str | None) -> tuple[str, str] | None:
        """``(evaluator, config_hash)`` of the results for items of ``category``."""
        k = self.keys.get("*") or self.keys.get(category or "")
        return (k[0], k[1]) if k else None

    @property
    def label(self) -> str:
        """A short display name: ``judge:part`` (with the fallback noted)."""
        return f"{self.name}:{self.part}" + (f" (for {self.spec.name})" if self.fallback_used else "")


class RunPlan(BaseModel):
    """Everything one benchmark run did, stored as the run's configuration."""

    benchmark: BenchmarkSpec
    model: str
    strategies: list[str]
    samples: int
    temperature: float
    top_p: float
    max_tokens: int
    seed: int | None = 0
    judge_model: str | None = None
    items: list[PlanItem]
    judges: list[PlanJudge] = Field(default_factory=list)
    #: The form of ``incomplete`` the metrics use (``no-answer`` or ``cap``; see :mod:`cotscope.pipeline`);
    #: stored plans written before it existed read the default.
    incomplete: str = "no-answer"

    def all_groups(self) -> list[str]:
        """Group ids of every scenario response (all strategies)."""
        return [g for it in self.items for g in it.groups.values()]


def item_messages(spec: BenchmarkSpec, item: Item) -> list[dict[str, Any]]:
    """The chat messages of one item: its system prompt (or the spec's) and the templated user turn."""
    system = item.system_prompt or spec.system_prompt
    msgs: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    msgs.append({"role": "user", "content": spec.render(item.prompt)})
    return msgs
