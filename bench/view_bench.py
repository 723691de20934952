"""`cotscope view` on a large store: time to first page, to a filter, to a search, to a trace.

Usage: python bench/view_bench.py [--traces 1000000] [--dir DIR] [--keep] [--repeat 3] [--json OUT]

1. ``build``: a store of --traces synthetic traces (8 models x 4 strategies, groups of 4 samples; a prompt of
   about 100 characters, four paragraphs of reasoning of about 1.6 KB, an answer of about 150). The rows are
   made by DuckDB from ``range()`` in chunks of 100,000 and stored through the store's own write path
   (:class:`cotscope.store._write.BatchWriter`: one transaction per chunk, known ids skipped by its anti-join),
   so the store's invariants hold (unique ids, one writer); no Python loop per row. One trace in 1,000 holds the
   word ``needle``. Results: a monitor on 30% of the traces (a tenth of them flagged), a judge on 10% (1% of
   those parse errors), written with one ``INSERT OR IGNORE ... SELECT`` into ``results`` (the statement
   ``Store.add_results`` runs, fed from SQL instead of Python dicts).
2. ``measure``: the viewer's app in process (Starlette's TestClient: routing, the guard, DuckDB, HTML
   rendering; no network), each request --repeat times; the first request of the run also opens the store
   (the viewer opens it per request burst, see :mod:`cotscope.view._access`). Baselines in the same run: the
   bare DuckDB statements the list runs (the filtered count and top-N page) on an open connection, so the
   ratio is the viewer's own overhead; and a full scan (``count(*)`` with the search ``ILIKE``) for the search.

Figures vary on a shared machine: run it 2-3 times and report the best and the spread.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CHUNK = 100_000
MODELS = [f"org/model-{k}" for k in range(8)]
STRATEGIES = ["normal", "zerothink", "lessthink", "morethink"]
_TEXT = ("the user asks about this so I need to consider whether answering is safe and then compute the "
         "result step by step carefully check each term again because it matters ") * 6


def build(path: Path, n: int) -> dict[str, Any]:
    """Write the synthetic store; returns its size and timings."""
    import duckdb  # noqa: F401  (the store's engine; imported here so --help stays fast)

    from cotscope.store import Store
    from cotscope.store._write import BatchWriter, arrow_schema

    t0 = time.perf_counter()
    models = "[" + ", ".join(f"'{m}'" for m in MODELS) + "]"
    strategies = "[" + ", ".join(f"'{s}'" for s in STRATEGIES) + "]"
    schema = arrow_schema()
    with Store(path) as st:
        run_id = st.start_run("benchmark", "synthetic", {"traces": n})
        writer = BatchWriter(st.con, st.path, run_id)
        new = 0
        for lo in range(0, n, CHUNK):
            hi = min(n, lo + CHUNK)
            sql = f"""
                SELECT md5('view-bench-' || i::VARCHAR)[1:24] AS id,
                       '[{{"role": "user", "content": "Question ' || (i // 4)::VARCHAR || ': how would one '
                         || substr('{_TEXT}', 1 + (i * 7) % 150, 60) || '?"}}]' AS prompt,
                       substr('{_TEXT}', 1 + (i * 7) % 200, 300 + (i * 13) % 200) || chr(10) || chr(10)
                         || substr('{_TEXT}', 1 + (i * 11) % 200, 400 + (i * 17) % 200) || chr(10) || chr(10)
                         || substr('{_TEXT}', 1 + (i * 5) % 200, 350 + (i * 19) % 200)
                         || CASE WHEN i % 1000 = 7 THEN ' needle ' ELSE ' ' END || chr(10) || chr(10)
                         || 'Wait, ' || substr('{_TEXT}', 1 + (i * 3) % 200, 300 + (i * 23) % 200) AS reasoning,
                       'The answer to question ' || (i // 4)::VARCHAR || ' is '
                         || substr('{_TEXT}', 1 + (i * 29) % 200, 120) AS answer,
                       true AS reasoning_closed, NULL AS steps, '[]' AS actions,
                       {models}[1 + ((i // 16) % 8)] AS model, {strategies}[1 + ((i // 4) % 4)] AS strategy,
                       'g-' || md5('group-' || (i // 4)::VARCHAR)[1:24] AS group_id, (i % 4)::INTEGER AS sample_index,
                       'synthetic.jsonl' AS source_file, i::BIGINT + 1 AS source_line, 'jsonl' AS source_format,
                       '{{}}' AS metadata, NULL AS reasoning_provenance, '{run_id}' AS run_id
                FROM range({lo}, {hi}) r(i)
            """
            table = st.con.sql(sql).to_arrow_table().cast(schema)
            new += writer.add(table)
        new += writer.flush()
        t_traces = time.perf_counter() - t0
        # Results for a share of the traces: the store's results statement, fed from SQL.
        st.con.execute("""
            INSERT OR IGNORE INTO results (trace_id, evaluator, config_hash, part, kind, label, score, parse_error,
                                           reason, run_id)
            SELECT id, 'cot-monitor', 'h1', 'reasoning', 'monitor', (hash(id) % 10 = 0), (hash(id) % 1000) / 1000.0,
                   NULL, 'synthetic', NULL FROM traces WHERE hash(id) % 10 < 3
        """)
        st.con.execute("""
            INSERT OR IGNORE INTO results (trace_id, evaluator, config_hash, part, kind, label, score, parse_error,
                                           reason, run_id)
            SELECT id, 'safety-judge', 'h2', 'answer', 'judge',
                   CASE WHEN hash(id) % 1000 = 0 THEN NULL ELSE hash(id) % 7 = 0 END, NULL,
                   CASE WHEN hash(id) % 1000 = 0 THEN 'no verdict' END, NULL, NULL
            FROM traces WHERE hash(id) % 100 >= 90
        """)
        st.add_evaluator("cot-monitor", "h1", kind="monitor", label_meaning="flagged", config={})
        st.add_evaluator("safety-judge", "h2", kind="judge", label_meaning="unsafe", config={})
        st.finish_run(run_id, "done", {"traces": new})
        n_results = st.con.execute("SELECT count(*) FROM results").fetchone()[0]
    return {"traces": new, "results": int(n_results), "build_s": round(time.perf_counter() - t0, 1),
            "traces_s": round(t_traces, 1), "file_mb": round(path.stat().st_size / 2**20)}


def _time(fn: Any, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def measure(path: Path, repeat: int) -> dict[str, Any]:
    """Time the viewer's requests and the bare DuckDB baselines."""
    import duckdb
    from starlette.testclient import TestClient

    from cotscope.view import ViewSettings, create_app
    from cotscope.view._query import ORDER, Filters, where_clause

    app = create_app(ViewSettings(store=path, token="t", keep_open=600))
    c = TestClient(app, base_url="http://127.0.0.1:8000")
    con = duckdb.connect(str(path), read_only=True)
    some_id = con.execute("SELECT id FROM traces WHERE source_line = (SELECT count(*) // 2 FROM traces)").fetchone()[0]
    con.close()
    cases = {
        "first page": ("/", {}),
        "filter: model": ("/", {"model": MODELS[3]}),
        "filter: model + strategy": ("/", {"model": MODELS[3], "strategy": "zerothink"}),
        "filter: monitor flagged": ("/", {"evaluator": "cot-monitor", "label": "true"}),
        "filter: parse errors": ("/", {"parse_error": "1"}),
        "search: rare word": ("/", {"q": "needle"}),
        "search: common phrase": ("/", {"q": "step by step"}),
        "search: no match": ("/", {"q": "zebra crossing"}),
        "deep page (offset 500,000)": ("/", {"offset": "500000"}),
        "one trace": (f"/traces/{some_id}", {}),
        "one trace by 8-char prefix": (f"/traces/{some_id[:8]}", {}),
    }
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    r = c.get("/")
    out["cold first page (opens the store)"] = {"s": round(time.perf_counter() - t0, 3)}
    assert r.status_code == 200, r.text[:500]
    for name, (url, params) in cases.items():
        times = _time(lambda url=url, params=params: _ok(c.get(url, params=params)), repeat)
        out[name] = {"best_s": round(min(times), 3), "worst_s": round(max(times), 3),
                     "median_s": round(statistics.median(times), 3)}
    c.close()
    app.state.access.close()
    # Baselines: the list's own statements on an open connection, and full scans.
    con = duckdb.connect(str(path), read_only=True)
    base: dict[str, Any] = {}
    for name, f in (("first page", Filters()), ("filter: model", Filters(model=MODELS[3])),
                    ("search: rare word", Filters(q="needle")), ("search: common phrase", Filters(q="step by step"))):
        where, params = where_clause(f)

        def run(where: str = where, params: list[Any] = params) -> None:
            con.execute(f"SELECT count(*) FROM traces t {where}", params).fetchone()
            con.execute(f"SELECT t.id, left(t.reasoning, 160) FROM traces t {where} ORDER BY {ORDER} LIMIT 50",
                        params).fetchall()

        times = _time(run, repeat)
        base[name] = {"best_s": round(min(times), 3)}
    times = _time(lambda: con.execute("SELECT count(*) FROM traces").fetchone(), repeat)
    base["count(*)"] = {"best_s": round(min(times), 4)}
    times = _time(lambda: con.execute("SELECT count(*) FROM traces WHERE reasoning ILIKE '%needle%'").fetchone(),
                  repeat)
    base["scan: reasoning ILIKE"] = {"best_s": round(min(times), 3)}
    times = _time(lambda: con.execute("SELECT count(*) FROM traces WHERE contains(reasoning, 'needle')").fetchone(),
                  repeat)
    base["scan: reasoning contains (case-sensitive)"] = {"best_s": round(min(times), 3)}
    try:
        con.execute("INSTALL fts")
        fts = "installed"
    except duckdb.Error as e:
        fts = f"unavailable: {str(e).splitlines()[0][:120]}"
    con.close()
    for name, v in base.items():
        if name in out:
            v["viewer_over_bare"] = round(out[name]["best_s"] / max(v["best_s"], 1e-6), 2)
    return {"viewer": out, "baseline": base, "fts": fts}


def _ok(r: Any) -> None:
    if r.status_code != 200:
        raise RuntimeError(f"{r.url}: HTTP {r.status_code}: {r.text[:300]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--traces", type=int, default=1_000_000)
    ap.add_argument("--dir", type=Path, default=None, help="where the store goes (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the store (and reuse it when it is there)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    tmp = args.dir or Path(tempfile.mkdtemp(prefix="view-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / f"view-{args.traces}.duckdb"
    try:
        if path.exists() and args.keep:
            info: dict[str, Any] = {"traces": args.traces, "reused": str(path)}
        else:
            path.unlink(missing_ok=True)
            info = build(path, args.traces)
        print(json.dumps({"build": info}), flush=True)
        res = measure(path, args.repeat)
        res["build"] = info
        print(f"{'request':<40}{'best s':>9}{'worst s':>9}{'bare s':>9}{'ratio':>7}")
        for name, v in res["viewer"].items():
            b = res["baseline"].get(name, {})
            print(f"{name:<40}{v.get('best_s', v.get('s')):>9}{v.get('worst_s', ''):>9}{b.get('best_s', ''):>9}"
                  f"{b.get('viewer_over_bare', ''):>7}")
        for name, v in res["baseline"].items():
            if name not in res["viewer"]:
                print(f"{'baseline ' + name:<40}{v['best_s']:>9}")
        print(f"fts extension: {res['fts']}")
        if args.json:
            args.json.write_text(json.dumps(res, indent=2))
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
