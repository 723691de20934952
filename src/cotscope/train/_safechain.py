"""SafeChain SFT data (SafeChain, arXiv:2502.12025, the section that builds the SafeChain dataset).

SafeChain builds its safety-training set by sampling K = 5 responses per WildJailbreak instruction from a
reasoning model, judging each with Llama-Guard, keeping only the instructions whose K responses are all safe,
and keeping one response of each at random. Here every step is an existing stage, so the build is resumable
and nothing is done twice: :func:`cotscope.pipeline.generate` makes the K samples, :func:`cotscope.pipeline.
evaluate` judges each on the reasoning and on the answer, and the filter reads the stored verdicts. A sample is
safe only with a verdict on both parts that the judge's label meaning reads as safe; a missing sample, a parse
error or a missing verdict is never taken for safe.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from cotscope._progress import Progress
from cotscope.judges import Part, get_judge
from cotscope.models import Model, RequestCache
from cotscope.pipeline import Sampling, as_evaluator, evaluate, generate
from cotscope.store import Store
from cotscope.thinking import get_strategy
from cotscope.traces import PromptItem, Trace
from cotscope.traces._trace import group_id_for
from cotscope.train._build import check_meaning, recorded_run, stored_results, verdict_of
from cotscope.train._records import BuildReport, SFTRecord, assistant_text, file_sha256, write_records

__all__ = ["SAFECHAIN_PARTS", "build_safechain"]

BUILDER = "safechain"
#: Both parts are judged: SafeChain asks for safe reasoning and a safe answer.
SAFECHAIN_PARTS: tuple[Part, Part] = ("reasoning", "answer")


def _prompts_sha256(prompts: Sequence[PromptItem]) -> str:
    h = hashlib.sha256()
    for p in prompts:
        h.update(orjson.dumps(p.messages, option=orjson.OPT_SORT_KEYS) + b"\n")
    return h.hexdigest()


def _record(t: Trace, meta: dict[str, Any]) -> SFTRecord:
    msgs = [{"role": m.role, "content": m.content} for m in t.prompt]
    msgs.append({"role": "assistant", "content": assistant_text(t.answer, t.reasoning)})
    return SFTRecord(messages=msgs, metadata=meta)


async def build_safechain(
    store: Store,
    prompts: Sequence[PromptItem],
    out: str | Path,
    *,
    model: str,
    strategy: str = "normal",
    samples: int = 5,
    judge: str = "llama-guard",
    judge_model: str | None = None,
    judge_options: dict[str, Any] | None = None,
    sampling: Sampling | None = None,
    backend: Model | Callable[[], Model] | None = None,
    model_base_url: str | None = None,
    model_args: dict[str, Any] | None = None,
    cache: RequestCache | None = None,
    seed: int = 0,
    source_file: str | None = None,
    progress: Progress | None = None,
) -> BuildReport:
    """Generate K samples per prompt, judge both parts, keep the all-safe prompts, one response each.

    A prompt is *kept* when all K samples are stored and each has a verdict on the reasoning and on the answer
    that reads as safe; it is *dropped unsafe* when any sample has an unsafe verdict (it can never be kept);
    otherwise it is *dropped incomplete* (a sample missing after generation errors, a judge parse error, a
    missing verdict): those are listed in ``errors`` with the prompt's file and line. Of a kept prompt one
    sample is chosen with ``random.Random(seed)`` among those whose reasoning closed and whose answer is
    non-empty (a prompt with none is dropped incomplete). A rerun on the same store generates and judges
    nothing new.

    Args:
        store: the open store (traces and verdicts go there; the build is recorded as a ``data`` run).
        prompts: the prompts (``cotscope.traces.read_prompts`` or a benchmark's).
        out: the JSONL to write.
        model: ``provider/model`` of the model that writes the responses.
        strategy: the decoding strategy (``normal``, ``zerothink``, ...).
        samples: K samples per prompt (SafeChain: 5).
        judge: the safety judge's registry name (SafeChain: Llama-Guard).
        judge_model: the judge's model, for LLM judges.
        judge_options: judge options (``get_judge(judge, model=judge_model, **judge_options)``).
        sampling: temperature, top-p, budget and seed of generation.
        backend: a backend or factory for the model (default built from ``model``).
        model_base_url: an OpenAI-compatible server URL.
        model_args: backend options.
        cache: the request cache.
        seed: the seed choosing one response per kept prompt.
        source_file: where the prompts came from (a file: its sha256 goes into the run config).
        progress: where progress goes.

    Returns:
        The report: ``read`` = distinct prompts, ``written["safechain"]`` = kept, ``rejected`` = dropped;
        ``details`` has ``kept``, ``dropped_unsafe``, ``dropped_incomplete``, ``duplicate_prompts`` and the
        generate/evaluate stats.

    Raises:
        ConfigError: the judge's label has no safe reading, or an unknown judge or strategy.
    """
    strat = get_strategy(strategy)
    sampling = sampling or Sampling()
    jdg = get_judge(judge, model=judge_model, **(judge_options or {}))
    evs = {p: as_evaluator(jdg, p) for p in SAFECHAIN_PARTS}
    check_meaning(jdg.name, evs["answer"].label_meaning)
    config: dict[str, Any] = {
        "model": model, "strategy": strat.name, "samples": samples, "judge": judge, "judge_model": judge_model,
        "judge_options": judge_options or {}, "judge_config_hash": {p: e.config_hash for p, e in evs.items()},
        "sampling": asdict(sampling), "seed": seed, "out": str(out), "source": source_file,
        "prompts": len(prompts), "prompts_sha256": _prompts_sha256(prompts),
        "model_base_url": model_base_url, "model_args": {k: str(v) for k, v in (model_args or {}).items()},
    }
    if source_file and Path(source_file).is_file():
        config["input_sha256"] = file_sha256(source_file)
    with recorded_run(store, BUILDER, config) as run:
        try:
            gen = await generate(store, prompts, model=model, strategy=strat, samples=samples, sampling=sampling,
                                 backend=backend, model_base_url=model_base_url, model_args=model_args,
                                 cache=cache, source_file=source_file, progress=progress,
                                 description=f"safechain · {model} · {strat.name}")
            groups: dict[str, PromptItem] = {}
            for it in prompts:
                groups.setdefault(group_id_for(it.messages, model, strat.name), it)
            by_group = store.ids_by_group(group_id=sorted(groups)) if groups else {}
            traces = {t.id: t for t in store.traces(ids=[i for ids in by_group.values() for i in ids])}
            members = {g: sorted((traces[i] for i in by_group.get(g, []) if traces[i].sample_index < samples),
                                 key=lambda t: t.sample_index) for g in groups}
            ids = [t.id for ts in members.values() for t in ts]
            ev_stats = {}
            for p in SAFECHAIN_PARTS:
                ev_stats[p] = await evaluate(store, jdg, p, trace_ids=ids,
                                             progress=progress, description=f"safechain · {jdg.name}:{p}")
        finally:
            await jdg.aclose()
        results = {p: stored_results(store, e, ids) for p, e in evs.items()}
        meaning = evs["answer"].label_meaning
        rng = random.Random(seed)
        records, errors = [], []
        counts = {"kept": 0, "dropped_unsafe": 0, "dropped_incomplete": 0}
        for i, (g, item) in enumerate(groups.items()):
            where = f"{source_file}:{item.line}" if source_file else f"prompt {i + 1}"
            ts = members[g]
            unsafe, missing = False, []
            if len({t.sample_index for t in ts}) < samples:
                missing.append(f"{samples - len({t.sample_index for t in ts})} of {samples} samples missing "
                               "(generation errors; rerun to retry)")
            for t in ts:
                for p in SAFECHAIN_PARTS:
                    safe, why = verdict_of(results[p].get(t.id), meaning)
                    if safe is False:
                        unsafe = True
                    elif safe is None:
                        missing.append(f"sample {t.sample_index} {p}: {why}")
            usable = [t for t in ts if t.reasoning_closed and t.answer.strip()]
            if not unsafe and not missing and not usable:
                missing.append("no sample with a closed reasoning and an answer")
            if unsafe:
                counts["dropped_unsafe"] += 1
            elif missing:
                counts["dropped_incomplete"] += 1
                errors.append(f"{where}: dropped incomplete: {'; '.join(missing[:3])}"
                              + (f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""))
            else:
                counts["kept"] += 1
                t = rng.choice(usable)
                records.append(_record(t, {
                    "builder": BUILDER, "source": {"trace_id": t.id}, "trace_id": t.id, "group_id": g,
                    "sample_index": t.sample_index, "model": model, "strategy": strat.name, "judge": jdg.name,
                    "judge_model": judge_model, "samples": samples, "seed": seed,
                    **({"prompt_source": {"file": source_file, "line": item.line}} if source_file else {})}))
        written = {"safechain": write_records(out, records)}
        run.report = BuildReport(
            builder=BUILDER, inputs=[source_file or "<prompts>"], outputs={"safechain": str(out)},
            read=len(groups), written=written, rejected=counts["dropped_unsafe"] + counts["dropped_incomplete"],
            errors=errors, config=config,
            details={"primary": "safechain", **counts, "duplicate_prompts": len(prompts) - len(groups),
                     "generate": gen.to_dict(), "evaluate": {p: s.to_dict() for p, s in ev_stats.items()}})
    return run.report
