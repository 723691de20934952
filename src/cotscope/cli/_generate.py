"""``cotscope generate``: traces from prompts with any backend and decoding strategy, resumable."""

from __future__ import annotations

import asyncio
import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from cotscope.cli._app import app, console, fail, print_json

#: Fields that hold the prompt text of a record, tried in order (SafeChain, StrongREJECT, generic).
PROMPT_FIELDS = ("messages", "prompt", "instruction", "forbidden_prompt", "question", "input")


@dataclass
class PromptItem:
    """One prompt read from a file."""

    messages: list[dict[str, Any]]
    line: int
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class PromptErrors:
    """Bad records of a prompt file, with file and line."""

    file: str
    errors: list[tuple[int, str]] = field(default_factory=list)


def _record_messages(rec: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    if isinstance(rec, str):
        if not rec.strip():
            raise ValueError("empty prompt")
        return [{"role": "user", "content": rec}], {}
    if not isinstance(rec, dict):
        raise ValueError(f"expected an object or a string, got {type(rec).__name__}")
    for f in PROMPT_FIELDS:
        v = rec.get(f)
        if v is None or v == "":
            continue
        meta = {k: x for k, x in rec.items() if k != f and isinstance(x, str | int | float | bool)}
        if isinstance(v, str):
            msgs = [{"role": "user", "content": v}]
            sys_msg = rec.get("system")
            if isinstance(sys_msg, str) and sys_msg:
                msgs.insert(0, {"role": "system", "content": sys_msg})
                meta.pop("system", None)
            return msgs, meta
        if isinstance(v, list) and v and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in v
        ):
            return [{"role": m["role"], "content": m["content"]} for m in v], meta
        raise ValueError(f"field {f!r} must be a string or a list of {{role, content}} messages")
    raise ValueError(f"no prompt field: expected one of {', '.join(PROMPT_FIELDS)}")


def read_prompts(path: Path) -> tuple[list[PromptItem], PromptErrors]:
    """Read prompts from a JSONL, JSON or CSV file; bad records are returned with their line numbers.

    A record has ``messages`` (chat messages) or one of ``prompt``/``instruction``/``forbidden_prompt``/
    ``question``/``input`` (text; ``system`` adds a system message); JSON files may also be a list of
    strings. Other scalar fields of a record are kept as trace metadata.

    Raises:
        OSError: the file cannot be read.
        ValueError: a JSON file that does not parse at all.
    """
    errs = PromptErrors(str(path))
    items: list[PromptItem] = []
    suffix = path.suffix.lower()

    def add(rec: Any, line: int) -> None:
        try:
            msgs, meta = _record_messages(rec)
        except ValueError as e:
            errs.errors.append((line, str(e)))
            return
        items.append(PromptItem(msgs, line, meta))

    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            for row in reader:
                add({k: v for k, v in row.items() if k is not None}, reader.line_num)
    elif suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            data = data.get("prompts") or data.get("data") or [data]
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of prompts")
        for i, rec in enumerate(data, 1):
            add(rec, i)
    else:
        with path.open(encoding="utf-8") as f:
            for n, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                try:
                    rec = json.loads(raw)
                except ValueError as e:
                    errs.errors.append((n, f"invalid JSON: {e}"))
                    continue
                add(rec, n)
    return items, errs


def parse_model_args(pairs: list[str]) -> dict[str, Any]:
    """``k=v`` strings to a dict; values parse as JSON (numbers, booleans, lists) or stay strings.

    Raises:
        ValueError: a pair without ``=``.
    """
    out: dict[str, Any] = {}
    for p in pairs:
        k, sep, v = p.partition("=")
        if not sep or not k.strip():
            raise ValueError(f"--model-arg {p!r} must look like key=value")
        try:
            out[k.strip()] = json.loads(v)
        except ValueError:
            out[k.strip()] = v
    return out


def _benchmark_prompts(name: str) -> list[PromptItem]:
    try:
        from cotscope import benchmarks
    except ImportError:
        fail(f"--benchmark {name}: no benchmark registry in this install yet (cotscope.benchmarks); "
             "use --prompts FILE")
    loader = getattr(benchmarks, "benchmark_prompts", None)
    if loader is None:
        fail(f"--benchmark {name}: the benchmark registry has no benchmark_prompts(name); use --prompts FILE")
    try:
        recs = loader(name)
    except (KeyError, ValueError) as e:
        fail(f"--benchmark {name}: {e}")
    items = []
    for i, rec in enumerate(recs, 1):
        msgs, meta = _record_messages(rec)
        items.append(PromptItem(msgs, i, meta | {"benchmark": name}))
    return items


@app.command()
def generate(
    model: Annotated[str, typer.Option("--model", "-m", help="provider/model, e.g. openai/gpt-4.1, local/smollm2, "
                                       "llamacpp/smollm2, vllm/Qwen/QwQ-32B.")],
    store: Annotated[Path, typer.Option("--store", "-s", help="DuckDB store file.")],
    prompts: Annotated[Path | None, typer.Option("--prompts", "-p", help="JSONL, JSON or CSV prompt file.")] = None,
    benchmark: Annotated[str | None, typer.Option("--benchmark", "-b", help="A registered benchmark.")] = None,
    strategy: Annotated[str, typer.Option(help="normal, zerothink, lessthink, morethink[:BUDGET], nothink, "
                                          "prefill:TEXT.")] = "normal",
    samples: Annotated[int, typer.Option("--samples", "-k", min=1, help="Samples per prompt.")] = 1,
    temperature: Annotated[float | None, typer.Option(help="Default 0 for one sample, 0.6 for several.")] = None,
    top_p: Annotated[float, typer.Option("--top-p")] = 1.0,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1)] = 4096,
    seed: Annotated[int | None, typer.Option(help="Base seed; sample k uses seed + k.")] = None,
    max_connections: Annotated[int, typer.Option("--max-connections", min=1,
                                                 help="Concurrent requests (HTTP backends).")] = 32,
    model_base_url: Annotated[str | None, typer.Option("--model-base-url",
                                                       help="OpenAI-compatible server URL (…/v1).")] = None,
    model_arg: Annotated[list[str] | None, typer.Option("--model-arg", "-M", help="Backend option k=v.")] = None,
    cache: Annotated[Path | None, typer.Option(help="Request cache file (default ~/.cache/cotscope).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Send every request.")] = False,
    limit: Annotated[int | None, typer.Option(help="Only the first N prompts.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """Generate K samples per prompt into a store; a rerun generates only what is missing."""
    from cotscope.models import GenerateConfig, GenerateRequest, get_model
    from cotscope.models._cache import RequestCache
    from cotscope.models._engine import Engine
    from cotscope.store import Store
    from cotscope.thinking import get_strategy
    from cotscope.traces._rows import make_row
    from cotscope.traces._trace import group_id_for

    if (prompts is None) == (benchmark is None):
        fail("give exactly one of --prompts FILE or --benchmark NAME")
    try:
        strat = get_strategy(strategy)
        margs = parse_model_args(model_arg or [])
    except ValueError as e:
        fail(str(e))
    bad = PromptErrors(str(prompts) if prompts else f"benchmark:{benchmark}")
    if prompts is not None:
        if not prompts.is_file():
            fail(f"{prompts}: no such file")
        try:
            items, bad = read_prompts(prompts)
        except (OSError, ValueError, UnicodeDecodeError) as e:
            fail(f"{prompts}: {e}")
    else:
        items = _benchmark_prompts(str(benchmark))
    for line, msg in bad.errors[:20]:
        console.print(f"[red]bad prompt[/] {escape(bad.file)}:{line}: {escape(msg)}", highlight=False)
    if len(bad.errors) > 20:
        console.print(f"[red]… and {len(bad.errors) - 20} more bad prompts[/]")
    if limit is not None:
        items = items[:limit]
    if not items:
        fail("no valid prompts")

    temp = temperature if temperature is not None else (0.0 if samples == 1 else 0.6)
    try:
        st = Store(store)
    except OSError as e:
        fail(str(e))
    # Work out what is missing before starting a backend: a finished set costs nothing to rerun.
    have = st.existing_samples(model=model, strategy=strat.name)
    seen: set[str] = set()
    work: list[tuple[PromptItem, str, int]] = []
    duplicates = 0
    for it in items:
        gid = group_id_for(it.messages, model, strat.name)
        if gid in seen:
            duplicates += 1
            continue
        seen.add(gid)
        work.extend((it, gid, k) for k in range(samples) if (gid, k) not in have)
    skipped = len(seen) * samples - len(work)

    requests = [
        GenerateRequest(
            messages=it.messages,
            config=GenerateConfig(temperature=temp, top_p=top_p, max_tokens=max_tokens,
                                  seed=None if seed is None else seed + k),
            sample_index=k,
        )
        for it, _, k in work
    ]
    run_config = {"model": model, "strategy": strat.name, "samples": samples, "temperature": temp, "top_p": top_p,
                  "max_tokens": max_tokens, "seed": seed, "prompts": str(prompts) if prompts else None,
                  "benchmark": benchmark, "model_args": {k: str(v) for k, v in margs.items()}}
    run_id = st.start_run("generate", model, run_config)
    stats_dict: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    status = "done"
    new = 0
    t0 = time.perf_counter()
    try:
        if requests:
            import cotscope.models  # noqa: F401  (registers the backends)

            margs.setdefault("max_connections", max_connections)
            try:
                backend = get_model(model, base_url=model_base_url, **margs)
            except (ValueError, TypeError, OSError, RuntimeError, ImportError) as e:
                fail(f"--model {model}: {e}")
            req_cache = None if no_cache else RequestCache(cache)
            engine = Engine(backend, strat, req_cache, progress=not json_out, console=console,
                            description=f"{model} · {strat.name}")
            pending: list[dict[str, Any]] = []
            last_flush = time.perf_counter()

            def flush() -> None:
                nonlocal new, last_flush
                if pending:
                    new += st.add_rows(pending, run_id)
                    pending.clear()
                last_flush = time.perf_counter()

            def on_result(i: int, out: Any) -> None:
                it, gid, k = work[i]
                if out.error is not None:
                    errors.append({"prompt_line": it.line, "sample_index": k, "error": out.error})
                    return
                meta = dict(it.metadata)
                meta.update(finish_reason=out.finish_reason, prompt_tokens=out.prompt_tokens,
                            completion_tokens=out.completion_tokens, cached=out.cached,
                            served_by=out.model)
                pending.append(make_row(
                    it.messages, out.reasoning, out.answer, out.reasoning_closed, model=model,
                    strategy=strat.name, group_id=gid, sample_index=k, metadata=meta,
                    source_file=str(prompts) if prompts else f"benchmark:{benchmark}", source_line=it.line,
                    source_format="generate",
                ))
                # Written in small batches so that a killed run loses at most a second of work.
                if len(pending) >= 64 or time.perf_counter() - last_flush > 1.0:
                    flush()

            async def run() -> None:
                try:
                    await engine.run(requests, on_result)
                finally:
                    await backend.aclose()

            try:
                asyncio.run(run())
            finally:
                flush()
                if req_cache is not None:
                    req_cache.close()
            stats_dict = engine.stats.to_dict()
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        summary = {
            "model": model, "strategy": strat.name, "prompts": len(seen), "samples": samples,
            "duplicate_prompts": duplicates, "bad_prompts": len(bad.errors), "requested": len(requests),
            "skipped_existing": skipped, "new_traces": new, "errors": len(errors),
            "seconds": round(time.perf_counter() - t0, 3), "engine": stats_dict, "run_id": run_id,
        }
        st.finish_run(run_id, status, summary | {"error_samples": errors[:50]})
        st.close()
    if json_out:
        print_json(summary | {"error_list": errors, "bad_prompt_list": [{"file": bad.file, "line": ln, "error": m}
                                                                         for ln, m in bad.errors]})
    else:
        _summary_table(summary, stats_dict, errors)
    if errors or bad.errors:
        raise typer.Exit(1)


def _summary_table(summary: dict[str, Any], stats: dict[str, Any], errors: list[dict[str, Any]]) -> None:
    t = Table(title=f"generate {summary['model']} · {summary['strategy']}")
    cols = ("prompts", "samples", "skipped", "generated", "cached", "errors", "tokens", "tok/s", "seconds")
    for c in cols:
        t.add_column(c, justify="right")
    t.add_row(
        f"{summary['prompts']:,}", str(summary["samples"]), f"{summary['skipped_existing']:,}",
        f"{summary['new_traces']:,}", f"{stats.get('cached', 0):,}", f"{summary['errors']:,}",
        f"{stats.get('completion_tokens', 0):,}", f"{stats.get('tokens_per_s', 0.0):,.1f}", f"{summary['seconds']:.2f}",
    )
    console.print(t)
    for e in errors[:10]:
        console.print(f"[red]error[/] prompt line {e['prompt_line']} sample {e['sample_index']}: {escape(e['error'])}",
                      highlight=False)
    if errors:
        console.print(f"{len(errors)} request(s) failed; rerun the same command to retry only those.")
