"""Benchmark: the namespace sandbox and the agent stage against their floors, measured in the same run.

- ``command``: one command in an episode's persistent terminal (``Sandbox.run``) vs the floor, the same command
  sent to a bare ``bash`` over a pipe by a minimal asyncio loop (no namespaces, limits, or output handling);
- ``episode``: start + one command + close of a sandbox episode vs the floor, ``unshare`` of the same
  namespaces running ``bash -c true`` (the cost of the kernel's namespaces alone, no overlay or limits);
- ``stage``: ``cotscope agent run`` with the scripted model over N benign tasks (setup, 1 action, DONE,
  checker, store) per episode, vs ``episode`` (what the loop, the checker and the store add).

Usage: ``sudo nice python bench/agent_bench.py [--commands 200] [--episodes 20] [--tasks 12]`` (root: the
sandbox needs it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


async def _bare_commands(n: int) -> float:
    proc = await asyncio.create_subprocess_exec("bash", "--noprofile", "--norc", stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert proc.stdin and proc.stdout
    t0 = time.perf_counter()
    for i in range(n):
        proc.stdin.write(f"echo hello; echo __END_{i}\n".encode())
        await proc.stdin.drain()
        while not (await proc.stdout.readline()).startswith(b"__END_"):
            pass
    dt = (time.perf_counter() - t0) / n
    proc.stdin.close()
    await proc.wait()
    return dt


async def _sandbox_commands(n: int) -> float:
    from cotscope.agents import get_sandbox

    box = await get_sandbox("namespace").start()
    try:
        await box.run("true")  # the shell starts on the first command
        t0 = time.perf_counter()
        for _ in range(n):
            await box.run("echo hello")
        return (time.perf_counter() - t0) / n
    finally:
        await box.close()


async def _bare_episodes(n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        p = await asyncio.create_subprocess_exec("unshare", "--mount", "--pid", "--ipc", "--uts", "--net", "--fork",
                                                 "bash", "-c", "true")
        await p.wait()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


async def _sandbox_episodes(n: int) -> float:
    from cotscope.agents import get_sandbox

    prov = get_sandbox("namespace")
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        box = await prov.start()
        await box.run("echo hello")
        await box.close()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _stage(n_tasks: int) -> float:
    from cotscope.agents import load_tasks
    from cotscope.pipeline import run_agent
    from cotscope.store import Store

    tasks = load_tasks("cuaharm-benign").tasks[:n_tasks]
    with tempfile.TemporaryDirectory() as d:
        script = Path(d) / "s.jsonl"
        script.write_text("".join(json.dumps({"task": t.id, "actions": ["echo hello"]}) + "\n" for t in tasks))
        store = Store(Path(d) / "a.duckdb")
        t0 = time.perf_counter()
        st = asyncio.run(run_agent(store, tasks, model=f"script/{script}", concurrency=1))
        dt = (time.perf_counter() - t0) / n_tasks
        store.close()
        assert st.new_traces == n_tasks, st.to_dict()
    return dt


def main() -> None:
    """Run the three measurements and print figures and ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commands", type=int, default=200)
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--tasks", type=int, default=12)
    a = ap.parse_args()
    out: dict[str, Any] = {}
    bare_c, box_c = asyncio.run(_bare_commands(a.commands)), asyncio.run(_sandbox_commands(a.commands))
    out["command_ms"] = {"floor": bare_c * 1e3, "sandbox": box_c * 1e3, "ratio": box_c / bare_c}
    bare_e, box_e = asyncio.run(_bare_episodes(a.episodes)), asyncio.run(_sandbox_episodes(a.episodes))
    out["episode_ms"] = {"floor": bare_e * 1e3, "sandbox": box_e * 1e3, "ratio": box_e / bare_e}
    stage = _stage(a.tasks)
    out["stage_ms_per_episode"] = {"episode": box_e * 1e3, "stage": stage * 1e3, "ratio": stage / box_e}
    for k, v in out.items():
        print(f"{k:22s} " + "  ".join(f"{kk} {vv:8.2f}" for kk, vv in v.items()))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
