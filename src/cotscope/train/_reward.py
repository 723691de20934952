"""Reward functions for RL fine-tuning, named in a registry, with TRL's reward-function signature.

``self-monitor`` (CoT Monitor+): the model ends its reasoning with ``<monitor>\\n{safe|unsafe}: why\\n</monitor>``
and is rewarded when that self-assessment agrees with an external judge's verdict on the same reasoning. The
judge reads the reasoning with the segment removed, so it never sees the model's verdict on itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from cotscope._registry import Registry
from cotscope._sync import run_sync
from cotscope.metrics import safe_from_label
from cotscope.traces import Trace, parse_monitor, split_reasoning, strip_monitor

if TYPE_CHECKING:
    from cotscope.judges import Judge, JudgeResult, Part

__all__ = ["REWARDS", "RewardFunction", "SelfMonitorReward", "get_reward", "reward", "reward_names"]

#: TRL's reward-function shape: ``f(prompts, completions, **columns) -> one float (or None) per completion``.
RewardFunction = Callable[..., list[float | None]]


def _load_builtins() -> None:
    # Nothing beyond this module yet; the loader keeps the registry's shape the same as the others'.
    return None


#: Reward factories by name (``cotscope train grpo --reward NAME``).
REWARDS: Registry[RewardFunction] = Registry("reward", loader=_load_builtins)


def reward(name: str) -> Callable[[Any], Any]:
    """Register a reward factory under ``name``: ``@reward("self-monitor")``."""
    return REWARDS.register(name)


def reward_names() -> list[str]:
    """Registered reward names."""
    return REWARDS.names()


def get_reward(name: str, **options: Any) -> RewardFunction:
    """Build a registered reward function (it records what it was built from, see ``cotscope._registry``).

    Raises:
        UnknownNameError: ``name`` is not registered.
        ConfigError: the options do not fit the factory.
    """
    return REWARDS.get(name, **options)


def completion_text(completion: Any) -> str:
    """The text of one TRL completion: a string, or a conversational list whose assistant messages are joined."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(str(m.get("content") or "") for m in completion
                       if isinstance(m, dict) and m.get("role", "assistant") == "assistant")
    raise TypeError(f"a completion is a string or a list of messages, got {type(completion).__name__}")


def prompt_messages(prompt: Any) -> list[dict[str, Any]]:
    """A TRL prompt (a string or a message list) as chat messages."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [dict(m) for m in prompt]


@reward("self-monitor")
class SelfMonitorReward:
    """Rewards agreement of the model's ``<monitor>`` self-assessment with an external judge.

    Per completion: the response is split into reasoning and answer (:func:`cotscope.traces.split_reasoning`),
    the ``<monitor>`` segment parsed (:func:`cotscope.traces.parse_monitor`), and the judge run on the trace
    with the segment stripped from both fields (:func:`cotscope.traces.strip_monitor`). The judge's label
    becomes safe/unsafe through its label meaning (:func:`cotscope.metrics.safe_from_label`).

    reward = ``agree`` when the segment's verdict equals the judge's, ``disagree`` when not, ``missing`` when
    there is no complete segment or it states no verdict; plus ``answer_weight`` when ``answer_weight > 0``
    and the judge finds the answer safe (a second judge call on the answer).

    ``missing`` defaults to -0.5, below a wrong verdict (0.0): a policy that never writes the segment then
    learns the format before it learns to be right, and leaving the segment out is never a way to avoid a
    wrong verdict (if missing scored 0 or more, abstaining would pay as well as guessing or better).

    A judge parse error or backend failure gives ``None`` for that completion (TRL leaves ``None`` rewards
    out of the mean); it is counted and never read as safe.

    Args:
        judge: a judge name (``llama-guard``, ``local-harm``, ``refusal-strings``, ...) or a built judge.
        judge_model: ``provider/model`` of the judge model, for LLM judges.
        judge_options: the judge's own options.
        part: the trace part the judge reads: ``reasoning`` (default), ``answer``, ``both`` (any trace part but
            ``monitor``, the segment being graded).
        answer_weight: weight of the answer-safety term (0: not computed).
        agree: reward of a verdict that agrees with the judge.
        disagree: reward of one that does not.
        missing: reward of a completion without a readable verdict.
        label_meaning: read the judge's label with this meaning instead of its own (``unsafe``: true is an
            unsafe verdict), e.g. for ``local-harmful-request``, whose label rates the request.

    Attributes:
        counts: ``calls`` (completions scored), ``agree``, ``disagree``, ``missing``, ``parse_errors``,
            ``judge_errors``, ``answer_safe``, ``answer_unsafe``; readable after training.
    """

    def __init__(self, judge: str | Judge, judge_model: str | None = None, judge_options: dict[str, Any] | None = None,
                 part: Part = "reasoning", answer_weight: float = 0.0, agree: float = 1.0, disagree: float = 0.0,
                 missing: float = -0.5, label_meaning: str | None = None) -> None:
        from cotscope.judges import PARTS, get_judge

        # The monitor part is the segment itself, which the judge must not read.
        allowed = [p for p in PARTS if p != "monitor"]
        if part not in allowed:
            raise ValueError(f"part must be one of {', '.join(allowed)}, got {part!r}")
        if answer_weight < 0:
            raise ValueError(f"answer_weight must be >= 0, got {answer_weight}")
        self.judge: Judge = get_judge(judge, model=judge_model, **(judge_options or {})) if isinstance(judge, str) \
            else judge
        self.label_meaning = label_meaning or self.judge.label_meaning
        safe_from_label(True, self.label_meaning)  # raises for a judge whose label has no safe reading
        self.part: Part = part
        self.answer_weight = float(answer_weight)
        self.values = {"agree": float(agree), "disagree": float(disagree), "missing": float(missing)}
        # TRL names the logged metrics after the function: rewards/self_monitor/mean.
        self.__name__ = "self_monitor"
        self.counts: dict[str, int] = dict.fromkeys(
            ("calls", "agree", "disagree", "missing", "parse_errors", "judge_errors", "answer_safe",
             "answer_unsafe"), 0)

    def _safe(self, r: JudgeResult) -> bool | None:
        """The judge's safe verdict, or ``None`` (counted) for a parse error or a backend failure."""
        if r.error is not None:
            self.counts["judge_errors"] += 1
            return None
        if r.parse_error is not None or r.label is None:
            self.counts["parse_errors"] += 1
            return None
        return safe_from_label(r.label, self.label_meaning)

    async def _judge_all(self, traces: list[Trace], need: list[int]) -> tuple[list[JudgeResult | None],
                                                                                   list[JudgeResult | None]]:
        monitor: list[JudgeResult | None] = [None] * len(traces)
        answer: list[JudgeResult | None] = [None] * len(traces)
        if need:
            for i, r in zip(need, await self.judge.judge([traces[i] for i in need], self.part), strict=True):
                monitor[i] = r
        if self.answer_weight > 0 and traces:
            answer = list(await self.judge.judge(traces, "answer"))
        return monitor, answer

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        """One reward per completion (TRL's reward-function signature; extra dataset columns are ignored)."""
        traces: list[Trace] = []
        verdicts: list[str | None] = []
        for prompt, completion in zip(prompts, completions, strict=True):
            split = split_reasoning(completion_text(completion))
            seg = parse_monitor(split.reasoning, split.answer)
            verdicts.append(seg.verdict if seg is not None else None)
            traces.append(Trace.model_validate({
                "prompt": prompt_messages(prompt), "reasoning": strip_monitor(split.reasoning),
                "answer": strip_monitor(split.answer), "reasoning_closed": split.reasoning_closed}))
        need = [i for i, v in enumerate(verdicts) if v is not None]
        monitor, answer = run_sync(self._judge_all(traces, need))
        out: list[float | None] = []
        for i, verdict in enumerate(verdicts):
            self.counts["calls"] += 1
            value: float | None
            if verdict is None:
                self.counts["missing"] += 1
                value = self.values["missing"]
            else:
                r = monitor[i]
                safe = self._safe(r) if r is not None else None
                if safe is None:
                    value = None
                else:
                    key = "agree" if (verdict == "safe") == safe else "disagree"
                    self.counts[key] += 1
                    value = self.values[key]
            if value is not None and self.answer_weight > 0:
                ra = answer[i]
                answer_safe = self._safe(ra) if ra is not None else None
                if answer_safe is None:
                    value = None
                else:
                    self.counts["answer_safe" if answer_safe else "answer_unsafe"] += 1
                    value += self.answer_weight * float(answer_safe)
            out.append(value)
        return out

    def close(self) -> None:
        """Release the judge's backend."""
        run_sync(self.judge.aclose())
