"""Self-monitor SFT data (CoT Monitor+): reasoning, a ``<monitor>`` self-assessment, then the answer.

CoT Monitor+ trains a reasoning model to assess its own chain of thought in a marked segment. Here the
assessment comes from a judge run over stored traces (through :func:`cotscope.pipeline.evaluate`, so it is
resumable and reuses verdicts already in the store): each judged trace becomes one example whose think block
ends with ``format_monitor(verdict, justification)``. The segment is part of the chain of thought, so the
answer stays clean for answer judges, and :func:`cotscope.traces.parse_monitor` (the ``monitor`` trace part)
reads it back from whatever the trained model writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from cotscope._progress import Progress
from cotscope.errors import ConfigError
from cotscope.judges import PARTS, Part, get_judge
from cotscope.pipeline import as_evaluator, evaluate
from cotscope.store import Store
from cotscope.traces import Trace, format_monitor, strip_monitor
from cotscope.train._build import check_meaning, recorded_run, stored_results, verdict_of
from cotscope.train._records import ROLES, BuildReport, SFTRecord, write_records

__all__ = ["MONITOR_FALLBACK", "build_self_monitor", "self_monitor_completion"]

BUILDER = "self-monitor"
#: The justification when the judge gives no reason.
MONITOR_FALLBACK: dict[str, str] = {
    "safe": "the reasoning stays on a harmless course.",
    "unsafe": "the reasoning works toward harmful content.",
}


def self_monitor_completion(reasoning: str, verdict: Literal["safe", "unsafe"], justification: str, answer: str) -> str:
    """The assistant turn: ``<think>\\n{reasoning}\\n\\n{segment}\\n</think>\\n\\n{answer}``.

    The ``<monitor>`` segment closes the think block, so a reasoning/answer splitter keeps it in the reasoning.
    """
    return f"<think>\n{reasoning}\n\n{format_monitor(verdict, justification)}\n</think>\n\n{answer}"


def _justification(reason: str | None, verdict: str, limit: int) -> str:
    """The judge's reason on one line, cut at a word boundary to ``limit`` characters; a fixed sentence when
    it gave none. A ``</monitor>`` inside it would end the segment early, so tags are taken out."""
    text = " ".join((reason or "").replace("<monitor>", "").replace("</monitor>", "").split())
    if not text:
        return MONITOR_FALLBACK[verdict]
    if len(text) > limit:
        cut = text[: max(limit - 1, 1)]
        text = (cut.rsplit(" ", 1)[0] if " " in cut else cut) + "…"
    return text


def _reject(t: Trace) -> str | None:
    if not t.reasoning.strip():
        return "no reasoning"
    if not t.reasoning_closed:
        return "the reasoning never closed"
    if not t.answer.strip():
        return "no answer"
    if not t.prompt or any(m.role not in ROLES for m in t.prompt):
        return "a prompt that is not a system/user/assistant chat (an agent trajectory?)"
    return None


async def build_self_monitor(
    store: Store,
    out: str | Path,
    *,
    judge: str,
    judge_model: str | None = None,
    judge_options: dict[str, Any] | None = None,
    part: str = "reasoning",
    label_meaning: str | None = None,
    justification_chars: int = 200,
    progress: Progress | None = None,
    **filters: Any,
) -> BuildReport:
    """Judge stored traces and write one self-monitor example per judged trace.

    The verdict is the judge's label read through its label meaning (``safe`` or ``unsafe``); the
    justification is its reason (one line, at most ``justification_chars``), or a fixed sentence per verdict
    when it gave none. A ``<monitor>`` segment already in a trace's reasoning is removed first. Rejected (and
    listed in ``errors`` as ``trace <id>: what``): traces without reasoning, with an unclosed reasoning or no
    answer, whose judge output did not parse, that have no verdict (a backend error: rerun), or whose prompt is
    not a chat.

    Args:
        store: the store holding the traces; verdicts go there and the build is recorded as a ``data`` run.
        out: the JSONL to write.
        judge: the safety judge's registry name.
        judge_model: the judge's model, for LLM judges.
        judge_options: judge options.
        part: the part the judge reads (``reasoning`` by default: the monitor assesses the reasoning).
        label_meaning: read the judge's label with this meaning instead of its own (``unsafe``: a true label
            is an unsafe verdict). Lets a judge whose label has no safe reading of its own stand in, e.g.
            ``local-harmful-request`` (a harmful request makes the reasoning about it unsafe territory).
        justification_chars: the longest justification.
        progress: where progress goes.
        **filters: which traces (``model=``, ``strategy=``, ``group_id=``, ...); default all.

    Returns:
        The report: ``read`` = traces selected, ``written["self-monitor"]``, ``rejected``; ``details`` has the
        count per verdict and the evaluate stats.

    Raises:
        ConfigError: an unknown part, or a judge whose label has no safe reading.
    """
    if part not in PARTS or part == "monitor":
        raise ConfigError(f"part must be one of {', '.join(p for p in PARTS if p != 'monitor')}, got {part!r}")
    if justification_chars < 8:
        raise ConfigError(f"justification_chars must be at least 8, got {justification_chars}")
    p: Part = part
    jdg = get_judge(judge, model=judge_model, **(judge_options or {}))
    ev = as_evaluator(jdg, p)
    meaning = label_meaning or ev.label_meaning
    check_meaning(jdg.name, meaning)
    config: dict[str, Any] = {"judge": judge, "judge_model": judge_model, "judge_options": judge_options or {},
                              "judge_config_hash": ev.config_hash, "part": part, "label_meaning": meaning,
                              "justification_chars": justification_chars, "filters": filters, "out": str(out)}
    with recorded_run(store, BUILDER, config) as run:
        ids = sorted(store.trace_ids(**filters))
        stats = await evaluate(store, jdg, p, trace_ids=ids, progress=progress, close=True,
                               description=f"self-monitor · {jdg.name}:{part}")
        results = stored_results(store, ev, ids)
        records, errors = [], []
        verdicts = {"safe": 0, "unsafe": 0}
        for t in store.traces(ids=ids):
            why = _reject(t)
            res = results.get(t.id)
            safe, no_verdict = verdict_of(res, meaning)
            if why is None and safe is None:
                why = no_verdict
            if why is not None:
                errors.append(f"trace {t.id}: {why}")
                continue
            assert res is not None
            verdict: Literal["safe", "unsafe"] = "safe" if safe else "unsafe"
            verdicts[verdict] += 1
            reasoning = strip_monitor(t.reasoning).strip()
            content = self_monitor_completion(reasoning, verdict, _justification(res.get("reason"), verdict,
                                                                                 justification_chars), t.answer)
            msgs = [{"role": m.role, "content": m.content} for m in t.prompt]
            msgs.append({"role": "assistant", "content": content})
            records.append(SFTRecord(messages=msgs, metadata={
                "builder": BUILDER, "source": {"trace_id": t.id}, "trace_id": t.id, "model": t.model,
                "strategy": t.strategy, "judge": jdg.name, "judge_model": judge_model, "part": part,
                "verdict": verdict, "label": res.get("label")}))
        written = {"self-monitor": write_records(out, records)}
        run.report = BuildReport(
            builder=BUILDER, inputs=[store.path],
            outputs={"self-monitor": str(out)}, read=len(ids), written=written, rejected=len(errors),
            errors=errors, config=config,
            details={"primary": "self-monitor", **verdicts, "evaluate": stats.to_dict()})
    return run.report

