"""Judging a Parquet corpus in place against ingesting it first: time per 100k traces and peak RSS.

Usage: python bench/parquet_bench.py [--traces 1000000] [--dir DIR] [--json OUT] [--phases make,inplace,...]

Phases, each in a fresh process so that its peak RSS is its own:

1. ``make``: a synthetic dataset of --traces traces in cotscope's export schema (about 2 KB of reasoning each,
   steps with their text as the export writes them), partitioned by model and strategy, written by DuckDB
   alone (no Python loop per row).
2. ``inplace``: ``Store.attach_traces(dataset)`` then ``evaluate`` with the ``refusal-strings`` judge on the
   answer alone (``scope=part``): the pending traces stream out of one anti-join; results go into a store file of
   their own.
3. ``ingest``: ``Store.ingest`` of every file of the dataset into a new store (the Parquet reader).
4. ``judge-ingested``: the same judge over the ingested store.
5. ``export``: ``cotscope export --partition-by model,strategy`` of the ingested store (streaming export).
6. ``check``: both result sets hold the same (trace id, label) pairs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_WORDS = ("the user asks about this so I need to consider whether answering is safe and then compute the "
          "result step by step carefully check each term again because it matters ")


def make(ds: Path, n: int) -> dict[str, Any]:
    """Write the synthetic dataset with DuckDB (the export schema; partition columns kept in the files)."""
    import duckdb

    t0 = time.perf_counter()
    con = duckdb.connect()
    text = _WORDS * 6
    # Four paragraphs per trace cut from a long text at offsets that vary by row; the fourth reflects ("Wait, ").
    con.execute(f"""
        COPY (
          WITH base AS (
            SELECT i,
                   substr('{text}', 1 + (i * 7) % 200, 300 + (i * 13) % 200) AS p1,
                   substr('{text}', 1 + (i * 11) % 200, 400 + (i * 17) % 200) AS p2,
                   substr('{text}', 1 + (i * 5) % 200, 350 + (i * 19) % 200) AS p3,
                   'Wait, ' || substr('{text}', 1 + (i * 3) % 200, 300 + (i * 23) % 200) AS p4
            FROM range({n}) r(i)
          ), t AS (
            SELECT *, length(p1) AS l1, length(p2) AS l2, length(p3) AS l3, length(p4) AS l4,
                   p1 || chr(10) || chr(10) || p2 || chr(10) || chr(10) || p3 || chr(10) || chr(10) || p4
                     AS reasoning
            FROM base
          )
          SELECT substr(md5(i::VARCHAR), 1, 24) AS id,
                 [{{'role': 'user', 'content': 'Question ' || i || ': ' || substr('{text}', 1, 160)}}] AS prompt,
                 reasoning,
                 CASE WHEN i % 3 = 0 THEN 'I''m sorry, but I can''t help with that.'
                      ELSE 'Sure. ' || substr('{text}', 1, 300) END AS answer,
                 true AS reasoning_closed,
                 [{{'index': 0, 'start': 0, 'end': l1, 'kind': 'paragraph', 'text': p1}},
                  {{'index': 1, 'start': l1 + 2, 'end': l1 + 2 + l2, 'kind': 'paragraph', 'text': p2}},
                  {{'index': 2, 'start': l1 + l2 + 4, 'end': l1 + l2 + 4 + l3, 'kind': 'paragraph', 'text': p3}},
                  {{'index': 3, 'start': l1 + l2 + l3 + 6, 'end': l1 + l2 + l3 + 6 + l4, 'kind': 'reflection',
                    'text': p4}}]::STRUCT("index" INTEGER, "start" INTEGER, "end" INTEGER, kind VARCHAR,
                                          "text" VARCHAR)[] AS steps,
                 '[]' AS actions,
                 'model-' || (i % 4) AS model,
                 CASE WHEN (i // 4) % 2 = 0 THEN 'normal' ELSE 'zerothink' END AS strategy,
                 'g' || (i // 4) AS group_id,
                 (i % 4)::INTEGER AS sample_index,
                 {{'file': 'synthetic.jsonl', 'line': i + 1, 'format': 'pair'}}
                   ::STRUCT(file VARCHAR, line BIGINT, format VARCHAR) AS source,
                 '{{"i": ' || i || '}}' AS metadata
          FROM t
        ) TO '{ds}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (model, strategy), WRITE_PARTITION_COLUMNS true)
    """)
    size = sum(f.stat().st_size for f in ds.rglob("*.parquet"))
    return {"traces": n, "files": len(list(ds.rglob("*.parquet"))), "mb": round(size / 1e6, 1),
            "seconds": round(time.perf_counter() - t0, 2)}


class _Clock:
    """A progress task that records the time at every 100k traces done."""

    def __init__(self, every: int = 100_000) -> None:
        self.every = every
        self.done_n = 0
        self.t0 = time.perf_counter()
        self.marks: list[float] = []

    def task(self, description: str, total: int | None = None) -> _Clock:
        self.t0 = time.perf_counter()
        return self

    def advance(self, n: int = 1, info: str = "") -> None:
        before = self.done_n // self.every
        self.done_n += n
        for _ in range(self.done_n // self.every - before):
            self.marks.append(time.perf_counter() - self.t0)

    def total(self, total: int | None) -> None:
        return None

    def done(self) -> None:
        return None

    def per_100k(self) -> list[float]:
        return [round(b - a, 2) for a, b in zip([0.0, *self.marks], self.marks, strict=False)]


def judge(store_path: Path, ds: Path | None) -> dict[str, Any]:
    from cotscope.judges import get_judge
    from cotscope.pipeline import evaluate
    from cotscope.store import Store

    clock = _Clock()
    t0 = time.perf_counter()
    with Store(store_path) as st:
        if ds is not None:
            st.attach_traces(ds)
        stats = asyncio.run(evaluate(st, get_judge("refusal-strings", scope="part"), "answer", progress=clock))
    secs = time.perf_counter() - t0
    return {"stored": stats.stored, "label_true": stats.label_true, "seconds": round(secs, 2),
            "traces_per_s": round(stats.stored / secs), "seconds_per_100k": clock.per_100k()}


def ingest(store_path: Path, ds: Path) -> dict[str, Any]:
    from cotscope.store import Store
    from cotscope.traces._read import dataset_files

    t0 = time.perf_counter()
    with Store(store_path) as st:
        r = st.ingest(dataset_files(ds))
    secs = time.perf_counter() - t0
    return {"new": r.new, "rejected": r.rejected, "seconds": round(secs, 2), "traces_per_s": round(r.new / secs)}


def export(store_path: Path, out: Path) -> dict[str, Any]:
    from cotscope.store import Store, export_traces

    t0 = time.perf_counter()
    with Store(store_path, read_only=True) as st:
        n = export_traces(st, out, "parquet", partition_by=["model", "strategy"])
    secs = time.perf_counter() - t0
    return {"traces": n, "seconds": round(secs, 2), "traces_per_s": round(n / secs)}


def check(a: Path, b: Path) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect()
    con.execute(f"ATTACH '{a}' AS a (READ_ONLY)")
    con.execute(f"ATTACH '{b}' AS b (READ_ONLY)")
    n = con.execute("SELECT count(*) FROM a.results").fetchone()
    diff = con.execute("SELECT count(*) FROM (SELECT trace_id, label FROM a.results EXCEPT ALL "
                       "SELECT trace_id, label FROM b.results)").fetchone()
    return {"results": n[0] if n else None, "differing": diff[0] if diff else None}


def _phase(args: argparse.Namespace) -> dict[str, Any]:
    d = Path(args.dir)
    ds = d / "dataset"
    if args.phase == "make":
        return make(ds, args.traces)
    if args.phase == "inplace":
        return judge(d / "inplace.duckdb", ds)
    if args.phase == "ingest":
        return ingest(d / "ingested.duckdb", ds)
    if args.phase == "judge-ingested":
        return judge(d / "ingested.duckdb", None)
    if args.phase == "export":
        return export(d / "ingested.duckdb", d / "exported")
    return check(d / "inplace.duckdb", d / "ingested.duckdb")


def _size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


PHASES = ("make", "inplace", "ingest", "judge-ingested", "export", "check")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--traces", type=int, default=1_000_000)
    ap.add_argument("--dir", default=None, help="work folder (default: a temporary one, removed at the end)")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    ap.add_argument("--phases", default=",".join(PHASES), help="comma-separated phases to run (with --dir, a "
                    "later run may reuse an earlier one's dataset and stores)")
    ap.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        out = _phase(args)
        ru = resource.getrusage(resource.RUSAGE_SELF)
        out["peak_rss_mb"] = round(ru.ru_maxrss / 1024)
        # CPU time of the whole process (DuckDB's threads included): comparable when the machine is shared.
        out["cpu_seconds"] = round(ru.ru_utime + ru.ru_stime, 1)
        print(json.dumps(out))
        return
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="cotscope-parquet-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {"traces": args.traces, "cpus": len(os.sched_getaffinity(0))}
    try:
        for phase in [p.strip() for p in args.phases.split(",") if p.strip()]:
            r = subprocess.run([sys.executable, __file__, "--phase", phase, "--dir", str(work), "--traces",
                                str(args.traces)], capture_output=True, text=True, check=False)
            if r.returncode != 0:
                sys.exit(f"{phase} failed:\n{r.stderr[-3000:]}")
            figures[phase] = json.loads(r.stdout.strip().splitlines()[-1])
            print(f"{phase:15s} {json.dumps(figures[phase])}", flush=True)
        sizes = {name: round(_size(work / name) / 1e6, 1)
                 for name in ("dataset", "exported", "ingested.duckdb", "inplace.duckdb") if (work / name).exists()}
        figures["mb_on_disk"] = sizes
        print(f"{'on disk (MB)':15s} {json.dumps(sizes)}")
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
