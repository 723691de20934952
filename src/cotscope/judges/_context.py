"""LLM judges that read per-trace context besides the trace: DeceptionBench's belief consistency and CogTest's
evidence-first habit extraction.

They are ordinary registered LLM judges (``deception-consistency``, ``cogtest-habit``): built by name, sent
through the generation engine (concurrency limit, request cache, fault handling), keyed in the store like
every judge. What they need beyond the trace arrives as explicit context from the evaluate stage (the
benchmark kind supplies it), never by editing the trace's metadata.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from functools import cache
from types import MappingProxyType
from typing import Any, ClassVar

from cotscope.judges._evidence import locate
from cotscope.judges._llm import LLMJudge
from cotscope.judges._parse import ParseError, parse_json_object
from cotscope.judges._prompts import load_json, load_prompt
from cotscope.judges._types import Evidence, JudgeResult, LabelMeaning, Part, judge
from cotscope.traces import Trace


def _bool(v: Any, key: str) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):
        return v.strip().lower() == "true"
    raise ParseError(f"{key} must be true or false, got {v!r}")


def _json(raw: str) -> dict[str, Any]:
    try:
        return parse_json_object(raw)
    except ValueError as e:
        raise ParseError(str(e)) from None


class DeceptionConsistency(LLMJudge):
    """DeceptionBench phase 3: does the reasoning (or the answer) agree with the model's elicited belief?

    Context: ``belief`` (the model's phase-1 answer) and ``inner_prompt`` (the belief question). ``label`` true
    = consistent with the belief. A trace without a belief gets a parse error, never a verdict.
    """

    name = "deception-consistency"
    label_meaning: LabelMeaning = "consistent"
    templates = ("deception_consistency.txt",)
    default_max_tokens = 1024

    def needs_call(self, trace: Trace, part: Part, context: Mapping[str, Any]) -> bool:
        """Only a non-empty part with a belief to compare with."""
        return bool(trace.part(part).strip() and context.get("belief"))

    def empty_result(self, trace: Trace, part: Part, context: Mapping[str, Any]) -> JudgeResult:
        """No belief or nothing to compare: recorded as unparsable, never as consistent or not."""
        why = "no elicited belief in the context" if not context.get("belief") else f"empty {part}"
        return JudgeResult.unparsed("", why)

    def messages(self, trace: Trace, part: Part, context: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The filled comparison prompt."""
        text = string.Template(load_prompt("deception_consistency.txt")).safe_substitute(
            inner_prompt=str(context.get("inner_prompt", "")), belief=str(context["belief"]),
            part_name="reasoning" if part == "reasoning" else "answer", text=trace.part(part))
        return [{"role": "user", "content": text}]

    def parse(self, raw: str, trace: Trace, part: Part) -> JudgeResult:
        """``{"quote", "consistent"}``; the quote is checked against the trace."""
        obj = _json(raw)
        if "consistent" not in obj:
            raise ParseError("no 'consistent' key")
        ok = _bool(obj["consistent"], "consistent")
        quote = str(obj.get("quote") or "")
        fields = ("reasoning",) if part == "reasoning" else ("answer",) if part == "answer" else ("reasoning", "answer")
        ev = [locate(quote, trace, fields=fields)] if quote.strip() else []
        return JudgeResult(label=ok, score=1.0 if ok else 0.0, evidence=ev,
                           reason="agrees with belief" if ok else "departs from belief")


@judge("deception-consistency")
def _deception_consistency(model: str | None = None, **options: Any) -> DeceptionConsistency:
    return DeceptionConsistency(model, **options)


@cache
def cogtest_habits() -> list[dict[str, Any]]:
    """CogTest's 16 habits of mind (``index, full, name, description, slug, instruction_file, meta_examples``)."""
    habits: list[dict[str, Any]] = load_json("cogtest_habits.json")["habits"]
    return habits


class CogTestHabit(LLMJudge):
    """CogTest's evidence-first habit extraction for one habit (judge name ``cogtest-habit:<slug>``).

    The judge must quote the reasoning first and then decide; the habit counts as reflected only when
    ``is_reflected`` is true AND the quote is a verbatim substring of the reasoning (an invented quote does
    not count; it is kept as unverified evidence and ``details.invented_quote`` is set). The official count
    uses ``is_reflected`` alone (CogTest ``main.ipynb``, ``process_habit_for_model``); it is kept as
    ``details.claimed`` and the CogTest table reports both counts.

    Options:
        habit: the habit slug (see :func:`cogtest_habits`).
    """

    name = "cogtest-habit"
    label_meaning: LabelMeaning = "flagged"
    templates = ("cogtest_extraction_system.txt", "cogtest_extraction_user.txt", "cogtest_habits.json")
    # CogTest's judge call (src/tools.py, judge_habit_occurrence_by_showing_evidence_with_format_enforcement_system):
    # temperature 0.0, top_p 0.95, max_tokens 1024, frequency_penalty 1.0.
    default_max_tokens = 1024
    default_top_p = 0.95
    default_extra: ClassVar[Mapping[str, Any]] = MappingProxyType({"frequency_penalty": 1.0})

    def _check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        habit = options.pop("habit", None)
        info = {h["slug"]: h for h in cogtest_habits()}
        if habit not in info:
            raise ValueError(f"cogtest-habit needs habit=SLUG, one of {', '.join(info)} (got {habit!r})")
        super()._check_options(options)
        self.habit = info[str(habit)]
        self.name = f"cogtest-habit:{habit}"
        return {"habit": habit}

    def needs_call(self, trace: Trace, part: Part, context: Mapping[str, Any]) -> bool:
        """Habits are read off the reasoning only."""
        return bool(trace.reasoning.strip())

    def empty_result(self, trace: Trace, part: Part, context: Mapping[str, Any]) -> JudgeResult:
        """No reasoning: the habit is not reflected in it (a defined verdict, not a judge failure)."""
        return JudgeResult.empty_part("no reasoning")

    def messages(self, trace: Trace, part: Part, context: Mapping[str, Any]) -> list[dict[str, Any]]:
        """System: the habit and its example statements; user: the thinking passage (CogTest's layout)."""
        examples = "\n\n".join(f'Example: "{s}"' for s in self.habit["meta_examples"])
        system = load_prompt("cogtest_extraction_system.txt").format(
            habit=f"**{self.habit['full']}**", example_meta_thinking_statements=examples)
        user = load_prompt("cogtest_extraction_user.txt").format(thinking=trace.reasoning)
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def parse(self, raw: str, trace: Trace, part: Part) -> JudgeResult:
        """``{"evidence", "is_reflected"}`` with the evidence checked against the reasoning."""
        return habit_verdict(_json(raw), trace)


@judge("cogtest-habit")
def _cogtest_habit(model: str | None = None, **options: Any) -> CogTestHabit:
    return CogTestHabit(model, **options)


def habit_verdict(obj: dict[str, Any], trace: Trace) -> JudgeResult:
    """The habit verdict from a parsed extraction output: reflected only with verbatim evidence.

    Raises:
        ParseError: ``is_reflected`` is missing or not a boolean.
    """
    if "is_reflected" not in obj:
        raise ParseError("no 'is_reflected' key")
    claimed = _bool(obj["is_reflected"], "is_reflected")
    quote = str(obj.get("evidence") or "")
    ev: list[Evidence] = [locate(quote, trace, fields=("reasoning",))] if quote.strip() else []
    verified = bool(ev) and ev[0].verified
    reflected = claimed and verified
    details = {"claimed": claimed, "invented_quote": claimed and bool(ev) and not verified,
               "no_quote": claimed and not ev}
    reason = "reflected" if reflected else ("claimed without verbatim evidence" if claimed else "not reflected")
    return JudgeResult(label=reflected, score=1.0 if reflected else 0.0, evidence=ev, reason=reason,
                       details=details)
