"""Generation benchmarks: engine overhead, cached rerun, local batching, llama.cpp backend overhead.

Run: ``python bench/generate_bench.py [--requests 2000] [--concurrency 32] [--skip-local]``.

1. Engine overhead: requests/s of the cotscope engine (OpenAI backend, strategy, stats, retries wrapper)
   vs a bare asyncio loop of the ``openai`` client at the same concurrency, both against the instant
   fake server running in a separate process (so it does not share the client's event loop).
2. Cached rerun vs first run: the same requests through the engine with the request cache, first run
   (server) vs rerun (all hits), against the instant server and with llama.cpp SmolLM2 generation.
3. Local transformers on SmolLM2: tokens/s at batch 8 vs batch 1.
4. llama.cpp backend vs bare ``llama_cpp.Llama.create_completion`` on the same rendered prompts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from cotscope.models import Engine, GenerateConfig, GenerateRequest, RequestCache, get_model


def _reqs(n: int, max_tokens: int = 16) -> list[GenerateRequest]:
    return [GenerateRequest(messages=[{"role": "user", "content": f"question {i}"}],
                            config=GenerateConfig(max_tokens=max_tokens)) for i in range(n)]


def start_server() -> tuple[subprocess.Popen[str], str]:
    """The fake server in its own process; returns it and its ``/v1`` URL."""
    p = subprocess.Popen([sys.executable, "-m", "cotscope.models._fakeserver", "--port", "0"],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    line = p.stdout.readline()
    port = int(line.split()[1])
    return p, f"http://127.0.0.1:{port}/v1"


async def bare_loop(url: str, n: int, conc: int) -> float:
    """Requests/s of a plain asyncio loop over the openai client."""
    import openai

    from cotscope.models._openai import _sdk_http_module

    limits = _sdk_http_module().Limits(max_connections=conc, max_keepalive_connections=conc)
    client = openai.AsyncOpenAI(api_key="x", base_url=url, max_retries=0,
                                http_client=openai.DefaultAsyncHttpxClient(limits=limits))
    sem = asyncio.Semaphore(conc)

    async def one(i: int) -> str:
        async with sem:
            r = await client.chat.completions.create(
                model="fake", messages=[{"role": "user", "content": f"question {i}"}], max_tokens=16,
                temperature=0.0, top_p=1.0)
            return r.choices[0].message.content or ""

    t0 = time.perf_counter()
    outs = await asyncio.gather(*(one(i) for i in range(n)))
    dt = time.perf_counter() - t0
    assert len(outs) == n
    await client.close()
    return n / dt


async def engine_loop(url: str, n: int, conc: int, cache: RequestCache | None = None) -> tuple[float, float]:
    """Requests/s and seconds of the engine."""
    model = get_model("openai/fake", base_url=url, max_connections=conc)
    eng = Engine(model, cache=cache)
    t0 = time.perf_counter()
    outs = await eng.run(_reqs(n))
    dt = time.perf_counter() - t0
    assert sum(o.error is None for o in outs) == n, eng.stats.error_causes
    await model.aclose()
    return n / dt, dt


def bench_http(n: int, conc: int) -> dict[str, float]:
    """Engine vs bare loop, and cached rerun vs first run, against the instant server."""
    proc, url = start_server()
    try:
        asyncio.run(bare_loop(url, 200, conc))  # warm-up: connections, imports
        bare, eng = [], []
        for _ in range(3):
            bare.append(asyncio.run(bare_loop(url, n, conc)))
            eng.append(asyncio.run(engine_loop(url, n, conc))[0])
        with tempfile.TemporaryDirectory() as d:
            cache = RequestCache(Path(d) / "c.sqlite")
            _, first = asyncio.run(engine_loop(url, n, conc, cache))
            _, rerun = asyncio.run(engine_loop(url, n, conc, cache))
            cache.close()
    finally:
        proc.terminate()
        proc.wait()
    r = {"bare_rps": max(bare), "engine_rps": max(eng), "engine_vs_bare": max(eng) / max(bare),
         "http_first_s": first, "http_cached_s": rerun, "http_cached_speedup": first / rerun}
    print(f"[http] bare openai loop {r['bare_rps']:.0f} req/s · engine {r['engine_rps']:.0f} req/s · "
          f"ratio {r['engine_vs_bare']:.2f}x (target >= 0.9) · {n} requests, concurrency {conc}")
    print(f"[cache/http] first run {first:.3f}s · cached rerun {rerun:.4f}s · {r['http_cached_speedup']:.0f}x")
    return r


def _llamacpp_child(mode: str, n_prompts: int, max_tokens: int) -> None:
    """One side of the llama.cpp comparison, alone in its process: prints completion tokens/s.

    Each side gets its own process because ggml's thread pools belong to the calling thread: two llama.cpp
    contexts used from different threads of one process slow each other down.
    """
    reqs = _reqs(n_prompts, max_tokens)
    model = get_model("llamacpp/smollm2", n_ctx=512, n_threads=2)
    if mode == "bare":
        from llama_cpp import Llama

        prompts = [model.render(r)[0] for r in reqs]  # type: ignore[attr-defined]
        asyncio.run(model.aclose())
        bare = Llama(model_path=str(model.path), n_ctx=512, n_threads=2, verbose=False)  # type: ignore[attr-defined]
        bare.create_completion(prompts[0], max_tokens=4, temperature=0.0)  # warm-up
        t0 = time.perf_counter()
        n_tok = sum(bare.create_completion(p, max_tokens=max_tokens, temperature=0.0)["usage"]["completion_tokens"]
                    for p in prompts)  # type: ignore[index]
    else:
        asyncio.run(model.generate(reqs[:1]))  # warm-up
        t0 = time.perf_counter()
        outs = asyncio.run(Engine(model).run(reqs))
        n_tok = sum(o.completion_tokens or 0 for o in outs)
    print(n_tok / (time.perf_counter() - t0))


def _llamacpp_tps(mode: str, n_prompts: int, max_tokens: int) -> float:
    out = subprocess.run([sys.executable, __file__, "--llamacpp-child", mode, "--max-tokens", str(max_tokens),
                          "--prompts", str(n_prompts)], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def bench_llamacpp(n_prompts: int, max_tokens: int) -> dict[str, float]:
    """llama.cpp backend vs bare Llama; cached rerun vs first run of real generation."""
    # Alternate bare and backend runs and keep the best of each: a shared machine's load comes and goes.
    bare_runs, backend_runs = [], []
    for _ in range(2):
        bare_runs.append(_llamacpp_tps("bare", n_prompts, max_tokens))
        backend_runs.append(_llamacpp_tps("backend", n_prompts, max_tokens))
    bare_tps, backend_tps = max(bare_runs), max(backend_runs)
    reqs = _reqs(n_prompts, max_tokens)
    model = get_model("llamacpp/smollm2", n_ctx=512, n_threads=2)
    with tempfile.TemporaryDirectory() as d:
        cache = RequestCache(Path(d) / "c.sqlite")
        eng = Engine(model, cache=cache)
        t0 = time.perf_counter()
        asyncio.run(eng.run(reqs))
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        asyncio.run(Engine(model, cache=cache).run(reqs))
        rerun = time.perf_counter() - t0
        cache.close()
    r = {"llamacpp_bare_tps": bare_tps, "llamacpp_backend_tps": backend_tps,
         "llamacpp_vs_bare": backend_tps / bare_tps, "llamacpp_first_s": first, "llamacpp_cached_s": rerun,
         "llamacpp_cached_speedup": first / rerun}
    print(f"[llama.cpp] bare Llama {bare_tps:.1f} tok/s · backend via engine {backend_tps:.1f} tok/s · "
          f"ratio {r['llamacpp_vs_bare']:.2f}x (target >= 0.9) · {n_prompts} prompts x {max_tokens} tokens")
    print(f"[cache/llama.cpp] first run {first:.2f}s · cached rerun {rerun:.4f}s · {first / rerun:.0f}x "
          "(target >= 50x)")
    return r


def bench_local(max_tokens: int, batch: int = 8) -> dict[str, float]:
    """Local transformers SmolLM2: tokens/s batched vs one at a time (greedy, all rows run to max_tokens)."""
    reqs = [GenerateRequest(messages=[{"role": "user", "content": f"Write a long story about the number {i}."}],
                            config=GenerateConfig(max_tokens=max_tokens)) for i in range(batch)]
    t0 = time.perf_counter()
    model = get_model("local/smollm2", batch_size=batch)
    print(f"[local] load {time.perf_counter() - t0:.1f}s (converted folder in the user cache)")
    asyncio.run(model.generate(reqs[:1]))  # warm-up
    res = {}
    for bs in (1, batch):
        model.batch_size = bs  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        outs = asyncio.run(model.generate(reqs))
        dt = time.perf_counter() - t0
        res[bs] = sum(o.completion_tokens or 0 for o in outs) / dt
    r = {"local_unbatched_tps": res[1], "local_batched_tps": res[batch], "local_batch_speedup": res[batch] / res[1]}
    print(f"[local] batch 1 {res[1]:.1f} tok/s · batch {batch} {res[batch]:.1f} tok/s · "
          f"{r['local_batch_speedup']:.2f}x (target >= 3x)")
    return r


def main() -> None:
    """Run the benchmarks and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--skip-local", action="store_true")
    ap.add_argument("--only", choices=["http", "llamacpp", "local"], default=None)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--llamacpp-child", choices=["bare", "backend"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.llamacpp_child:
        _llamacpp_child(a.llamacpp_child, a.prompts, a.max_tokens)
        return
    if a.only in (None, "http"):
        bench_http(a.requests, a.concurrency)
    if not a.skip_local and a.only in (None, "llamacpp"):
        bench_llamacpp(a.prompts, a.max_tokens)
    if not a.skip_local and a.only in (None, "local"):
        bench_local(a.max_tokens)


if __name__ == "__main__":
    main()
