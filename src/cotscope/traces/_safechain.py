"""SafeChain's output JSON: ``{meta_info, data: [{instruction, prompt, response: [K], thoughts?, solution?}]}``.

Facts about the format, from SafeChain's ``resp_gen.py``: ``meta_info`` is the argument namespace of the run
(``model`` is the model path, ``prompt`` is the decoding strategy: normal, ZeroThink, LessThink or morethink);
``prompt`` is the rendered chat template for local models (ending with ``<think>\\n`` for R1-Distill
models, and with the prefilled thought and ``</think>\\n\\n`` for ZeroThink and LessThink) or a message list
for API models; ``response`` holds the K completions of that prompt; MoreThink and the DeepSeek API also
write ``thoughts`` and ``solution`` lists.
"""

from __future__ import annotations

from typing import Any

from cotscope.traces._formats import Ctx, RecordFormatError, _prompt, text_spans
from cotscope.traces._rows import Row, make_row
from cotscope.traces._split import split_reasoning

#: SafeChain strategy names -> cotscope strategy names.
STRATEGIES = {"normal": "normal", "zerothink": "zerothink", "lessthink": "lessthink", "morethink": "morethink"}


def safechain_context(meta: dict[str, Any], ctx: Ctx) -> None:
    """Take model and strategy from ``meta_info`` unless the caller gave them."""
    if ctx.model is None:
        for k in ("model", "model_name", "model_path"):
            if isinstance(meta.get(k), str):
                ctx.model = meta[k]
                break
    if ctx.strategy is None:
        for k in ("strategy", "prompt"):
            v = meta.get(k)
            if isinstance(v, str):
                ctx.strategy = STRATEGIES.get(v.lower(), v)
                break


def _prefilled(rendered: str, tags: tuple[str, str]) -> tuple[bool, str | None]:
    """Whether the rendered prompt leaves the model inside a reasoning block, and any prefilled thought.

    A prompt ending with ``<think>\\n`` means the completion starts inside the block; a prompt ending
    with ``...</think>\\n\\n`` means the thought was prefilled (ZeroThink: empty, LessThink: a short one).
    """
    open_tag, close_tag = tags
    tail = rendered.rstrip()
    if tail.endswith(open_tag):
        return True, None
    if tail.endswith(close_tag):
        i = tail.rfind(open_tag)
        if i >= 0:
            return False, tail[i + len(open_tag) : len(tail) - len(close_tag)].strip()
    return False, None


def _str_list(item: dict[str, Any], key: str, index: int) -> list[str] | None:
    v = item.get(key)
    if v is None:
        return None
    if isinstance(v, str):
        return [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise RecordFormatError(f"data[{index}].{key} must be a list of strings")
    return v


def safechain_rows(item: Any, meta: dict[str, Any], ctx: Ctx) -> list[Row]:
    """The K traces of one ``data`` item, grouped by instruction."""
    index = (ctx.line or 1) - 1  # position in the data array (ctx.line counts from 1)
    if not isinstance(item, dict):
        raise RecordFormatError(f"data[{index}] must be an object, got {type(item).__name__}")
    inst = item.get("instruction")
    if not isinstance(inst, str):
        raise RecordFormatError(f"data[{index}].instruction must be a string, got {type(inst).__name__}")
    responses = _str_list(item, "response", index)
    if not responses:
        raise RecordFormatError(f"data[{index}].response must be a non-empty list of strings")
    thoughts = _str_list(item, "thoughts", index)
    solutions = _str_list(item, "solution", index)
    rendered = item.get("prompt")
    prompt = [{"role": "user", "content": inst}]
    item_meta: dict[str, Any] = {
        k: v for k, v in item.items() if k not in ("instruction", "response", "prompt", "thoughts", "solution")
    }
    inside, prefill = False, None
    if isinstance(rendered, str):
        item_meta["rendered_prompt"] = rendered
        inside, prefill = _prefilled(rendered, ctx.tags[0])
    elif isinstance(rendered, list):
        prompt = _prompt(rendered, where=f"data[{index}].prompt")
    item_meta["safechain_index"] = index
    if meta:
        item_meta["meta_info"] = meta
    rows = []
    open_tag = ctx.tags[0][0]
    for k, text in enumerate(responses):
        if thoughts is not None and solutions is not None and k < len(thoughts) and k < len(solutions):
            # MoreThink writes its thought with the tags around it; the tags are not reasoning.
            thought = thoughts[k].replace(open_tag, "").replace(ctx.tags[0][1], "")
            reasoning, answer, closed = thought.strip(), solutions[k].strip(), True
            # MoreThink's thought interleaves the model's text with injected "Wait" strings that SafeChain does
            # not mark apart: the model wrote most of it, so it is raw.
            spans = text_spans(reasoning)
        else:
            split = split_reasoning(open_tag + text if inside and open_tag not in text else text, ctx.tags)
            reasoning, answer, closed = split.reasoning, split.answer, split.reasoning_closed
            spans = text_spans(reasoning, closed)
            if prefill is not None and not reasoning:
                # ZeroThink / LessThink: the thought was written into the prompt, not generated (ZeroThink's is
                # empty: a zero-length prefill span says so).
                reasoning = prefill
                spans = [{"kind": "prefill", "start": 0, "end": len(reasoning)}]
        rows.append(
            make_row(prompt, reasoning, answer, closed, model=ctx.model, strategy=ctx.strategy, sample_index=k,
                     metadata=dict(item_meta), source_file=ctx.file, source_line=ctx.line,
                     source_format="safechain", reasoning_provenance=spans)
        )
    return rows
