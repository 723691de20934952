"""``cotscope generate``: parse options, call the generation stage, render its stats."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from cotscope.cli._app import app, console, fail, load_prompt_items, print_json, stage_progress
from cotscope.cli._ray import RayOpt, RayWorkersOpt, check_ray


@app.command()
def generate(
    model: Annotated[str, typer.Option("--model", "-m", help="provider/model, e.g. openai/gpt-4.1, local/smollm2, "
                                       "llamacpp/smollm2, vllm/Qwen/QwQ-32B.")],
    store: Annotated[Path, typer.Option("--store", "-s", help="DuckDB store file.")],
    prompts: Annotated[Path | None, typer.Option("--prompts", "-p", help="JSONL, JSON or CSV prompt file.")] = None,
    benchmark: Annotated[str | None, typer.Option("--benchmark", "-b", help="A registered benchmark.")] = None,
    strategy: Annotated[str, typer.Option(help="normal, zerothink, lessthink, morethink[:BUDGET], nothink, "
                                          "think-budget[:N], prefill:TEXT.")] = "normal",
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
    ray: RayOpt = None,
    ray_workers: RayWorkersOpt = None,
) -> None:
    """Generate K samples per prompt into a store; a rerun generates only what is missing."""
    from cotscope._options import parse_kv
    from cotscope.models import RequestCache
    from cotscope.pipeline import Sampling
    from cotscope.pipeline import generate as generate_stage
    from cotscope.store import Store
    from cotscope.thinking import get_strategy

    check_ray(ray)
    strat = get_strategy(strategy)
    margs = parse_kv(model_arg or [], "-M/--model-arg")
    items, bad, source = load_prompt_items(prompts, benchmark, model, limit)
    margs.setdefault("max_connections", max_connections)
    sampling = Sampling(temperature=temperature if temperature is not None else (0.0 if samples == 1 else 0.6),
                        top_p=top_p, max_tokens=max_tokens, seed=seed)
    try:
        st = Store(store)
    except OSError as e:
        fail(str(e))
    req_cache = None if no_cache else RequestCache(cache)
    try:
        with stage_progress(quiet=json_out) as prog:
            stats = asyncio.run(generate_stage(
                st, items, model=model, strategy=strat, samples=samples, sampling=sampling,
                model_base_url=model_base_url, model_args=margs, cache=req_cache, source_file=source,
                run_config={"prompts": str(prompts) if prompts else None, "benchmark": benchmark,
                            "model_args": {k: str(v) for k, v in margs.items()}, "bad_prompts": len(bad)},
                progress=prog, ray=ray, ray_workers=ray_workers))
    except (ValueError, TypeError, OSError, RuntimeError, ImportError) as e:
        fail(f"--model {model}: {e}")
    finally:
        if req_cache is not None:
            req_cache.close()
        st.close()
    summary: dict[str, Any] = stats.to_dict() | {"bad_prompts": len(bad)}
    if json_out:
        print_json(summary | {"bad_prompt_list": [e.to_dict() for e in bad]})
    else:
        _summary_table(summary)
    if stats.error_count or bad:
        raise typer.Exit(1)


def _summary_table(s: dict[str, Any]) -> None:
    eng = s["engine"]
    t = Table(title=f"generate {s['model']} · {s['strategy']}")
    for c in ("prompts", "samples", "skipped", "generated", "cached", "errors", "tokens", "tok/s", "seconds"):
        t.add_column(c, justify="right")
    t.add_row(f"{s['prompts']:,}", str(s["samples"]), f"{s['skipped_existing']:,}", f"{s['new_traces']:,}",
              f"{eng.get('cached', 0):,}", f"{s['errors']:,}", f"{eng.get('completion_tokens', 0):,}",
              f"{eng.get('tokens_per_s', 0.0):,.1f}", f"{s['seconds']:.2f}")
    console.print(t)
    for e in s["error_list"][:10]:
        console.print(f"[red]error[/] prompt line {e['prompt_line']} sample {e['sample_index']}: {escape(e['error'])}",
                      highlight=False)
    if s["errors"]:
        console.print(f"{s['errors']} request(s) failed; rerun the same command to retry only those.")
