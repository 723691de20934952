"""Ingest throughput (JSONL on disk -> DuckDB) against the floor of just parsing the file.

Usage: python bench/ingest_bench.py [--traces 100000] [--memory-gb 1.0] [--stages]

Prints MB/s and traces/s of `Store.ingest` end to end, the same for a bare loop that only parses each
line with orjson (the fastest JSON parser available here), DuckDB's own `read_json` + CTAS of the same file
(no splitting, hashing or dedup) in memory and into a database file, the ratios of ingest to each (targets:
>= 0.5x of the parse floor; >= 0.3x of DuckDB's CTAS into a file, the baseline that pays for durability as a
store does: DuckDB's own file CTAS reaches well under 0.3x of its in-memory one, see docs/core.md), all
measured in the same run, and peak RSS of ingest on a small file and on a file of
--memory-gb, each in a fresh process (target: flat). --stages also times each stage of ingest on its own:
reading rows (parse, normalise, split, hash), building the Arrow batches, and storing them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_TEXT = (
    "the user asks about this so I need to consider whether answering is safe and then compute the "
    "result step by step carefully check each term again because it matters"
)
WORDS = _TEXT.split(" ")


def make_file(path: Path, n: int, seed: int = 0) -> int:
    """Write n realistic traces (about 3 KB each: prompt, multi-paragraph reasoning, answer)."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            paras = []
            for _ in range(rng.randint(4, 9)):
                sent = " ".join(rng.choice(WORDS) for _ in range(rng.randint(30, 60)))
                if rng.random() < 0.3:
                    sent = "Wait, " + sent
                paras.append(sent + ".")
            reasoning = "\n\n".join(paras)
            answer = " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 120)))
            rec = {"prompt": f"Question {i}: " + " ".join(rng.choice(WORDS) for _ in range(30)),
                   "response": f"<think>\n{reasoning}\n</think>\n\n{answer}", "model": "bench-model"}
            f.write(json.dumps(rec) + "\n")
    return path.stat().st_size


def floor_parse(path: Path) -> float:
    import orjson

    t0 = time.perf_counter()
    n = 0
    with open(path, "rb", buffering=1 << 20) as f:
        for line in f:
            orjson.loads(line)
            n += 1
    return time.perf_counter() - t0


def ingest(path: Path, store: Path, prefetch: bool = True) -> tuple[float, int]:
    from cotscope import Store

    t0 = time.perf_counter()
    with Store(store) as st:
        rep = st.ingest([path], prefetch_batches=prefetch)
    return time.perf_counter() - t0, rep.new


def store_floor(src: Path, dst: Path) -> float:
    """Seconds to write already-normalised rows into an empty store: what persisting alone costs."""
    from cotscope import Store

    with Store(src) as a:
        rows = list(a.iter_rows())
    with Store(dst) as b:
        t0 = time.perf_counter()
        for k in range(0, len(rows), 5000):
            b.add_rows(rows[k : k + 5000])
        return time.perf_counter() - t0


def duckdb_floor(path: Path, db: Path | None = None) -> float:
    """Seconds of DuckDB's own ``read_json`` + CTAS of the file: in memory (``db=None``, the issue's baseline),
    or into a database file, closed so that it is on disk (what a store pays for durability as well)."""
    import duckdb

    con = duckdb.connect(str(db) if db is not None else ":memory:")
    t0 = time.perf_counter()
    con.execute(f"CREATE TABLE t AS SELECT * FROM read_json('{path}', format='newline_delimited', "
                "columns={'prompt': 'VARCHAR', 'response': 'VARCHAR', 'model': 'VARCHAR'})")
    con.close()
    return time.perf_counter() - t0


def stages(path: Path, store: Path) -> dict[str, float]:
    """Seconds of each ingest stage run alone, one after the other (no overlap): where the time goes."""
    from cotscope import Store
    from cotscope.store._write import first_of_each_id, rows_to_arrow
    from cotscope.traces._read import iter_row_batches

    out: dict[str, float] = {}
    t0 = time.perf_counter()
    batches = list(iter_row_batches(path))
    out["read rows (parse, normalise, split, hash)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tables = [rows_to_arrow(first_of_each_id(b), None) for b in batches]
    out["build Arrow batches"] = time.perf_counter() - t0
    del batches
    with Store(store) as st:
        t0 = time.perf_counter()
        for table in tables:
            st.con.register("_batch", table)
            st.con.execute("INSERT INTO traces BY NAME SELECT * FROM _batch ANTI JOIN traces USING (id)")
            st.con.unregister("_batch")
        out["store (anti-join + insert, one transaction per batch)"] = time.perf_counter() - t0
    return out


def _child_rss(path: str) -> None:
    from cotscope import Store

    with tempfile.TemporaryDirectory() as d, Store(Path(d) / "s.duckdb") as st:
        st.ingest([path])
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)


def peak_rss_mb(path: Path) -> int:
    out = subprocess.run([sys.executable, __file__, "--child-rss", str(path)], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", type=int, default=100_000)
    ap.add_argument("--memory-gb", type=float, default=1.0)
    ap.add_argument("--stages", action="store_true", help="also time each ingest stage on its own")
    ap.add_argument("--child-rss")
    args = ap.parse_args()
    if args.child_rss:
        _child_rss(args.child_rss)
        return
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as d:
        tmp = Path(d)
        data = tmp / "traces.jsonl"
        size = make_file(data, args.traces)
        mb = size / 1e6
        floor_parse(data)  # warm the page cache
        t_floor = min(floor_parse(data) for _ in range(2))
        t_ingest, new = ingest(data, tmp / "s.duckdb")
        print(f"file: {args.traces:,} traces, {mb:.0f} MB")
        print(f"floor (orjson parse only): {mb / t_floor:8.1f} MB/s  {args.traces / t_floor:10,.0f} traces/s")
        print(f"cotscope ingest -> DuckDB: {mb / t_ingest:8.1f} MB/s  {new / t_ingest:10,.0f} traces/s")
        t_py, _ = ingest(data, tmp / "py.duckdb", prefetch=False)
        t_store = store_floor(tmp / "py.duckdb", tmp / "floor.duckdb")
        t_dd = duckdb_floor(data)
        t_ddf = duckdb_floor(data, tmp / "ctas.duckdb")
        print(f"  (without read/store overlap: {mb / t_py:8.1f} MB/s  {new / t_py:10,.0f} traces/s)")
        print(f"  (DuckDB read_json + CTAS, no split/hash/index: {mb / t_dd:8.1f} MB/s in memory,"
              f" {mb / t_ddf:8.1f} MB/s into a file)")
        print(f"  (storage floor: insert the finished rows into an empty store: {mb / t_store:8.1f} MB/s,"
              f" ingest reaches {t_store / t_ingest:.2f}x of it)")
        print(f"ratio ingest/floor: {t_floor / t_ingest:.3f}x (target >= 0.5x)")
        print(f"ratio ingest/DuckDB read_json + CTAS into a file: {t_ddf / t_ingest:.3f}x (target >= 0.3x);"
              f" in memory: {t_dd / t_ingest:.3f}x (DuckDB's own file CTAS reaches {t_dd / t_ddf:.3f}x of it)")
        if args.stages:
            for name, sec in stages(data, tmp / "stages.duckdb").items():
                print(f"  stage {name}: {sec:6.2f} s  {mb / sec:8.1f} MB/s")
        if args.memory_gb > 0:
            small = tmp / "small.jsonl"
            make_file(small, max(1000, args.traces // 10), seed=1)
            big = tmp / "big.jsonl"
            per = size / args.traces
            make_file(big, int(args.memory_gb * 1e9 / per), seed=2)
            rss_small, rss_big = peak_rss_mb(small), peak_rss_mb(big)
            print(f"peak RSS: {rss_small} MB on {small.stat().st_size / 1e6:.0f} MB, "
                  f"{rss_big} MB on {big.stat().st_size / 1e6:.0f} MB (ratio {rss_big / rss_small:.2f})")


if __name__ == "__main__":
    main()
