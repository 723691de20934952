"""The Ray scenarios of ``test_ray.py``, run as one script inside a private network namespace.

Run as ``unshare -n sh -c 'ip link set lo up && python ray_scenarios.py OUT.json'``: one local Ray cluster
(``ray.init(num_cpus=4)``) and one fake OpenAI-compatible server serve every scenario, so the cluster's start-up
is paid once. Each scenario writes its findings into the JSON object; the tests assert on them.

Scenarios: generate over 3 workers against the in-process path; judge over workers against the in-process
path; the embedded classifier as a monitor over 2 workers; a worker killed mid-run (SIGKILL of its process);
the driver (``cotscope generate --ray ADDRESS``) killed mid-run, then rerun.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray

from cotscope.judges import get_judge
from cotscope.models._fakeserver import FaultConfig, serve_in_thread
from cotscope.monitors import get_monitor
from cotscope.pipeline import evaluate, generate
from cotscope.pipeline._ray import RayExecutor
from cotscope.store import Store
from cotscope.traces import PromptItem


def prompts(n: int, tag: str = "question") -> list[PromptItem]:
    return [PromptItem(messages=[{"role": "user", "content": f"{tag} {i}: how do I bake bread?" if i % 3 else
                                  f"{tag} {i}: I'm sorry to ask, but how do I pick a lock?"}],
                       line=i + 1, metadata={"item_id": f"{tag}{i}"}) for i in range(n)]


def snapshot(st: Store) -> list[list[Any]]:
    return sorted([r["id"], r["group_id"], r["sample_index"], r["reasoning"], r["answer"]] for r in st.iter_rows())


def counts(st: Store) -> dict[str, int]:
    rows = list(st.iter_rows())
    return {"rows": len(rows), "ids": len({r["id"] for r in rows}),
            "pairs": len({(r["group_id"], r["sample_index"]) for r in rows})}


def results(st: Store) -> list[list[Any]]:
    return sorted([r["trace_id"], r["evaluator"], r["config_hash"], r["part"], r["label"], r["score"]]
                  for r in st.results())


def gen(st: Store, url: str, ps: list[PromptItem], k: int, ray_: Any = None, conn: int = 4) -> Any:
    return asyncio.run(generate(st, ps, model="openai/fake", samples=k, model_base_url=url,
                                model_args={"max_connections": conn}, ray=ray_, flush_every=4))


def scenario_generate(tmp: Path, url: str, out: dict[str, Any]) -> None:
    ps = prompts(16)
    local, fan = Store(tmp / "gen_local.duckdb"), Store(tmp / "gen_ray.duckdb")
    a = gen(local, url, ps, 3)
    b = gen(fan, url, ps, 3, RayExecutor(workers=3))
    again = gen(fan, url, ps, 3, RayExecutor(workers=3))
    out["generate"] = {"same": snapshot(local) == snapshot(fan), "local": counts(local), "ray": counts(fan),
                       "stats": b.to_dict(), "local_new": a.new_traces, "rerun_requested": again.requested}
    # Judging the same traces over workers gives the in-process results, under the same keys.
    j1 = asyncio.run(evaluate(local, get_judge("refusal-strings"), "answer", batch_size=8))
    j2 = asyncio.run(evaluate(fan, get_judge("refusal-strings"), "answer", batch_size=8, ray=RayExecutor(workers=3)))
    out["judge"] = {"same": results(local) == results(fan), "local": j1.to_dict(), "ray": j2.to_dict(),
                    "n": len(results(fan))}
    # An embedded classifier as a monitor: each worker loads the model once and keeps it.
    m1 = asyncio.run(evaluate(local, get_monitor("local-refusal"), trace_ids=sorted(local.trace_ids())[:12]))
    m2 = asyncio.run(evaluate(fan, get_monitor("local-refusal"), trace_ids=sorted(fan.trace_ids())[:12],
                              ray=RayExecutor(workers=2)))
    # Same keys and labels; scores agree to float precision (the classifier batches differently on workers).
    a, b = results(local), results(fan)
    out["monitor"] = {"same_keys_labels": [r[:5] for r in a] == [r[:5] for r in b],
                      "max_score_diff": max(abs((x[5] or 0) - (y[5] or 0)) for x, y in zip(a, b, strict=True)),
                      "local": m1.to_dict(), "ray": m2.to_dict()}
    local.close()
    fan.close()


def scenario_kill_worker(tmp: Path, url: str, slow_url: str, out: dict[str, Any]) -> None:
    """SIGKILL one worker's process once results flow; the run completes with every unit stored once."""
    ps = prompts(30, "kw")
    st = Store(tmp / "kill_worker.duckdb")
    ex = RayExecutor(workers=3)
    killed: dict[str, Any] = {}

    def killer() -> None:
        deadline = time.time() + 60
        while time.time() < deadline and (len(ex.actors) < 3 or killed.get("stored", 0) < 4):
            time.sleep(0.05)
        try:
            pid = ray.get(ex.actors[0].pid.remote(), timeout=10)
            os.kill(pid, signal.SIGKILL)
            killed["pid"] = pid
        except Exception as e:  # the test reports it
            killed["error"] = repr(e)

    class Counting:  # a Progress whose task counts finished requests: the killer waits until some are in
        def task(self, description: str, total: int | None = None) -> Any:
            return self

        def advance(self, n: int = 1, info: str = "") -> None:
            killed["stored"] = killed.get("stored", 0) + n

        def total(self, total: int | None) -> None:
            pass

        def done(self) -> None:
            pass

    t = threading.Thread(target=killer)
    t.start()
    s = asyncio.run(generate(st, ps, model="openai/fake", samples=2, model_base_url=slow_url,
                             model_args={"max_connections": 1}, ray=ex, flush_every=4, progress=Counting()))
    t.join()
    ref = Store(tmp / "kill_worker_ref.duckdb")
    gen(ref, url, ps, 2)
    out["kill_worker"] = {"killed": killed, "stats": s.to_dict(), "counts": counts(st),
                          "same_as_local": snapshot(st) == snapshot(ref)}
    st.close()
    ref.close()


def scenario_kill_driver(tmp: Path, slow_url: str, server_ok: Callable[[], int], out: dict[str, Any]) -> None:
    """SIGKILL ``cotscope generate --ray`` mid-run, then rerun it: all samples stored, none twice."""
    pf = tmp / "prompts.jsonl"
    pf.write_text("".join(json.dumps({"prompt": p.messages[0]["content"]}) + "\n" for p in prompts(40, "kd")))
    store = tmp / "kill_driver.duckdb"
    exe = Path(sys.executable).with_name("cotscope")
    cmd = [str(exe), "generate", "-m", "openai/fake", "--model-base-url", slow_url, "-p", str(pf), "-s", str(store),
           "-k", "2", "-M", "max_connections=1", "--no-cache", "--json", "--ray-workers", "2"]
    env = {**os.environ, "COTSCOPE_RAY": ray.get_runtime_context().gcs_address}
    before = server_ok()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 90
    # Batches of 5 groups (10 requests), two in flight per worker, one request at a time: at 50 of 80 served the
    # first four batches are back and stored, later ones in flight.
    while time.time() < deadline and server_ok() - before < 50 and p.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    p.send_signal(signal.SIGKILL)
    p.wait()
    served = server_ok() - before
    st = Store(store)
    first = counts(st)
    st.close()
    q = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    st = Store(store)
    rerun = json.loads(q.stdout) if q.returncode == 0 else {"rc": q.returncode, "stderr": q.stderr[-3000:]}
    out["kill_driver"] = {"served_before_kill": served, "first": first, "rerun": rerun, "final": counts(st),
                          "expected": 80}
    st.close()


def main() -> None:
    dest = Path(sys.argv[1])
    tmp = dest.parent
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    out["ray_init_s"] = round(time.perf_counter() - t0, 1)
    try:
        with serve_in_thread() as fast, serve_in_thread(FaultConfig(delay_s=0.15)) as slow:
            steps: list[tuple[str, Callable[[], None]]] = [
                ("generate", lambda: scenario_generate(tmp, fast.base_url, out)),
                ("kill_worker", lambda: scenario_kill_worker(tmp, fast.base_url, slow.base_url, out)),
                ("kill_driver", lambda: scenario_kill_driver(tmp, slow.base_url, lambda: slow.stats.counts["ok"],
                                                             out)),
            ]
            for name, step in steps:
                t = time.perf_counter()
                try:
                    step()
                except Exception:
                    out.setdefault("errors", {})[name] = traceback.format_exc()[-4000:]
                out.setdefault("seconds", {})[name] = round(time.perf_counter() - t, 1)
                dest.write_text(json.dumps(out))
    finally:
        ray.shutdown()
        dest.write_text(json.dumps(out))


if __name__ == "__main__":
    main()
