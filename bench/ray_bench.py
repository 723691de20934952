"""Ray fan-out benchmark: generation throughput with 1, 2 and 4 Ray workers against the single-process engine.

Run: ``python bench/ray_bench.py [--requests 1200] [--service-ms 50] [--per-worker 4] [--workers 1,2,4]``.

The fake OpenAI-compatible server (its own process) answers every request after a fixed service time, and each
worker (and the single-process engine) keeps at most ``--per-worker`` requests in flight. A worker's throughput
is then bounded by ``per_worker / service time`` (80 requests/s at 4 and 50 ms), whatever the CPU, so the scaling
measured on a 2-core machine is the scaling of workers, not of async fan-out inside one process. Each
configuration generates the same prompts into a fresh store through :func:`cotscope.pipeline.generate`; with
Ray, the driver writes the store as on a real cluster.

Figures: wall time (worker start-up included) and steady throughput (requests between the first and the last
result, over that time; start-up excluded), and their ratios to the single-process engine.

Ray binds the machine's address; the benchmark re-runs itself inside a private network namespace
(``unshare -n``, loopback up) so that the cluster and the server stay on loopback. Needs root and ``cotscope[ray]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

INSIDE = "COTSCOPE_RAY_BENCH_INSIDE"


class Timing:
    """A Progress that records when the first and the last result came (the steady-state window)."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.last: float | None = None
        self.n = 0

    def task(self, description: str, total: int | None = None) -> Timing:
        return self

    def advance(self, n: int = 1, info: str = "") -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.last = now
        self.n += n

    def total(self, total: int | None) -> None:
        pass

    def done(self) -> None:
        pass


def start_server(service_ms: float) -> tuple[subprocess.Popen[str], str]:
    """The fake server in its own process; returns it and its ``/v1`` URL."""
    p = subprocess.Popen([sys.executable, "-m", "cotscope.models._fakeserver", "--port", "0",
                          "--delay", str(service_ms / 1000)], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    line = p.stdout.readline()
    if not line.startswith("READY"):
        raise RuntimeError(f"fake server did not start: {line!r}")
    return p, f"http://127.0.0.1:{line.split()[1]}/v1"


def one(url: str, n: int, per_worker: int, workers: int | None, tmp: Path) -> dict[str, Any]:
    """One configuration: ``workers=None`` is the single-process engine."""
    from cotscope.pipeline import generate
    from cotscope.pipeline._ray import RayExecutor
    from cotscope.store import Store
    from cotscope.traces import PromptItem

    prompts = [PromptItem(messages=[{"role": "user", "content": f"question {i}"}], line=i + 1) for i in range(n)]
    st = Store(tmp / f"bench_{workers or 0}.duckdb")
    timing = Timing()
    t0 = time.perf_counter()
    stats = asyncio.run(generate(st, prompts, model="openai/fake", model_base_url=url,
                                 model_args={"max_connections": per_worker},
                                 ray=RayExecutor(workers=workers) if workers else None, progress=timing))
    wall = time.perf_counter() - t0
    stored = st.count()
    st.close()
    assert stats.generated == n == stored, (stats.to_dict(), stored)
    steady = (timing.n - 1) / (timing.last - timing.first) if timing.first and timing.last and timing.n > 1 else 0.0
    return {"config": f"ray x{workers}" if workers else "single process", "workers": workers or 0,
            "requests": n, "wall_s": round(wall, 2), "requests_per_s": round(n / wall, 1),
            "steady_requests_per_s": round(steady, 1)}


def inside(a: argparse.Namespace) -> None:
    import ray

    server, url = start_server(a.service_ms)
    rows: list[dict[str, Any]] = []
    try:
        ray.init(num_cpus=max(a.workers), include_dashboard=False, log_to_driver=False, configure_logging=False)
        with tempfile.TemporaryDirectory() as d:
            rows.append(one(url, a.requests, a.per_worker, None, Path(d)))
            for w in a.workers:
                rows.append(one(url, a.requests, a.per_worker, w, Path(d)))
    finally:
        server.terminate()
        if ray.is_initialized():
            ray.shutdown()
    base = rows[0]
    for r in rows:
        r["ratio_wall"] = round(r["requests_per_s"] / base["requests_per_s"], 2)
        r["ratio_steady"] = round(r["steady_requests_per_s"] / base["steady_requests_per_s"], 2)
    bound = a.per_worker / (a.service_ms / 1000)
    print(f"{a.requests} requests, {a.service_ms:g} ms service time, {a.per_worker} in flight per worker "
          f"(bound {bound:.0f} requests/s per worker), {os.cpu_count()} CPUs")
    print(f"{'config':<16}{'wall s':>8}{'req/s':>9}{'steady req/s':>14}{'x wall':>8}{'x steady':>10}")
    for r in rows:
        print(f"{r['config']:<16}{r['wall_s']:>8}{r['requests_per_s']:>9}{r['steady_requests_per_s']:>14}"
              f"{r['ratio_wall']:>8}{r['ratio_steady']:>10}")
    if a.out:
        Path(a.out).write_text(json.dumps({"settings": {"requests": a.requests, "service_ms": a.service_ms,
                                                        "per_worker": a.per_worker, "cpus": os.cpu_count()},
                                           "rows": rows}, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=1200)
    ap.add_argument("--service-ms", type=float, default=50.0)
    ap.add_argument("--per-worker", type=int, default=4)
    ap.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4])
    ap.add_argument("--out", default=None, help="Write the figures as JSON here.")
    a = ap.parse_args()
    if os.environ.get(INSIDE):
        inside(a)
        return
    # Ray binds the machine's address otherwise: run the whole benchmark on loopback only.
    p = subprocess.run(["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", sys.executable,
                        *sys.argv], env={**os.environ, INSIDE: "1"}, check=False)
    sys.exit(p.returncode)


if __name__ == "__main__":
    main()
