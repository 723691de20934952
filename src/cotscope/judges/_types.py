"""The judge protocol, its result type, evidence spans and the registry that names judges."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field, field_validator

from cotscope._registry import Registry
from cotscope.traces import TRACE_PARTS, Trace, TracePart, parse_monitor

#: The part of a trace a judge reads: ``reasoning``, ``answer``, ``both``, for agent trajectories ``actions``
#: (the commands with their outputs) and ``trajectory`` (per step: reasoning, then command and output), and for
#: self-monitoring models ``monitor`` (the inner text of the ``<monitor>`` segment).
Part = TracePart
PARTS: tuple[Part, ...] = TRACE_PARTS
#: The parts that exist only for agent trajectories.
AGENT_PARTS: tuple[Part, ...] = ("actions", "trajectory")
#: The parts a trace may lack altogether (no trajectory, no ``<monitor>`` segment): judging an absent one is
#: a parse error, not a verdict (:meth:`JudgeResult.no_text`).
OPTIONAL_PARTS: tuple[Part, ...] = (*AGENT_PARTS, "monitor")

#: What a ``True`` label means for a judge. Metrics turn labels into "safe" with this:
#: ``unsafe``/``misaligned``/``flagged`` -> safe = not label; ``refused``/``consistent`` -> safe = label
#: (:func:`cotscope.metrics.safe_from_label`).
LabelMeaning = Literal["unsafe", "refused", "misaligned", "flagged", "harmful_request", "consistent"]


class Evidence(BaseModel):
    """A quoted span of a trace that supports a verdict.

    ``verified`` is true only when ``text`` occurs verbatim in the named ``field`` of the trace, in which
    case ``start``/``end`` locate it there. A quote that a judge invented is kept (it is evidence of a
    judge error) but marked ``verified=False`` with no offsets.
    """

    text: str
    field: str | None = Field(default=None, description="reasoning, answer, prompt, both, actions, trajectory, "
                              "or actions[i].command / actions[i].output (one action's command or output)")
    start: int | None = None
    end: int | None = None
    verified: bool = False
    chunk: int | None = Field(default=None, description="index of the chunk it came from, for chunked scoring")
    score: float | None = None
    step: int | None = Field(default=None, description="the agent step the quote comes from (trajectories)")


class JudgeResult(BaseModel):
    """The verdict of a judge on one part of one trace.

    ``label`` is true when the property holds (unsafe, refused, misaligned, flagged). A judge output that
    cannot be parsed sets ``parse_error`` (with the raw text in ``raw``) and leaves ``label`` and
    ``score`` as ``None``: it never defaults to safe or unsafe.
    """

    label: bool | None = None
    score: float | None = None
    parse_error: str | None = None
    raw: str | None = None
    reason: str | None = None
    evidence: list[Evidence] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)
    #: A backend failure (timeout, HTTP error). Such results are not stored so that a rerun retries them.
    error: str | None = None

    @field_validator("score")
    @classmethod
    def _score_in_unit(cls, v: float | None) -> float | None:
        if v is not None and not (0.0 <= v <= 1.0):
            raise ValueError(f"score {v} is outside [0, 1]")
        return v

    @classmethod
    def empty_part(cls, reason: str = "empty part") -> JudgeResult:
        """The defined verdict on a part with no text: nothing unsafe, no refusal, nothing flagged."""
        return cls(label=False, score=0.0, reason=reason, details={"empty_part": True})

    @classmethod
    def no_text(cls, trace: Trace, part: Part) -> JudgeResult:
        """The result for a part with no text: :meth:`empty_part`, except for a part the trace lacks altogether,
        which is not a verdict but a parse error (there is nothing to judge, so "nothing flagged" would be made
        up): an agent part (``actions``, ``trajectory``) of a trace that is not an agent episode, and the
        ``monitor`` part of a trace with no complete ``<monitor>`` segment. A segment that is there but blank
        is an empty part."""
        if part in AGENT_PARTS and not (trace.actions or isinstance(trace.metadata.get("agent"), dict)):
            return cls.unparsed("", f"no {part} to judge: the trace is not an agent trajectory")
        if part == "monitor" and parse_monitor(trace.reasoning, trace.answer) is None:
            return cls.unparsed("", "no monitor to judge: the trace has no complete <monitor> segment")
        return cls.empty_part(f"empty {part}")

    @classmethod
    def unparsed(cls, raw: str, why: str, **details: Any) -> JudgeResult:
        """A result recording that ``raw`` could not be parsed, with no label and no score."""
        return cls(parse_error=why, raw=raw, details=details)


@runtime_checkable
class Judge(Protocol):
    """Scores one part of each trace for a property.

    A judge is async and batched so that LLM judges can hand a whole batch to the generation engine
    (which owns concurrency, caching and retries); local judges simply compute.
    """

    name: str
    label_meaning: LabelMeaning
    #: Traces per batch the evaluate stage hands over (large for local classifiers, 64 for LLM judges).
    preferred_batch: int

    def config(self) -> dict[str, Any]:
        """Everything that changes the verdicts (model, template hash, thresholds): hashed into the store key."""
        ...

    async def judge(self, traces: Sequence[Trace], part: Part,
                    context: Sequence[Mapping[str, Any]] | None = None) -> list[JudgeResult]:
        """One result per trace, in order.

        ``context`` holds one mapping per trace with what the judge needs beyond the trace itself (e.g.
        DeceptionBench's elicited ``belief``); judges that need none ignore it.
        """
        ...

    async def aclose(self) -> None:
        """Release the backend."""
        ...


JudgeFactory = Callable[..., Judge]


def _load_builtins() -> None:
    # Imported on first lookup, not at module top, so that the registry module has no import cycle
    # with the judges that register themselves in it.
    from cotscope.judges import _context, _llm, _local, _phrase, _strings  # noqa: F401


#: Judge factories by name. A factory is called as ``factory(model=..., **options)``.
JUDGES: Registry[Judge] = Registry("judge", loader=_load_builtins)


def judge(name: str) -> Callable[[JudgeFactory], JudgeFactory]:
    """Register a judge factory under ``name``: ``@judge("llama-guard")``.

    The factory is called as ``factory(model=..., **options)``; judges that need no model ignore ``model``.
    """
    return JUDGES.register(name)


def judge_names() -> list[str]:
    """Registered judge names."""
    return JUDGES.names()


def get_judge(name: str, *, model: str | None = None, **options: Any) -> Judge:
    """Build a registered judge.

    The judge records what it was built from (``cotscope._registry.registry_info``).

    Args:
        name: a registry name such as ``refusal-strings`` or ``llama-guard``.
        model: ``provider/model`` of the judge model, for LLM judges.
        **options: judge-specific options (e.g. ``threshold``, ``mode``).

    Raises:
        ConfigError: unknown name, or an LLM judge without a model (a ``ValueError``).
    """
    return JUDGES.get(name, model=model, **options)
