"""Run every benchmark of ``bench/`` once with its default settings (``make bench``), one after the other.

Each prints its own figures and ratios against a floor measured in the same run; this only runs them in turn
and says which failed. Pass names to run some: ``python bench/run_all.py agent ingest``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def main() -> int:
    """Run the chosen benchmarks (all by default); the exit status is the number that failed."""
    scripts = sorted(HERE.glob("*_bench.py"))
    wanted = set(sys.argv[1:])
    if wanted:
        scripts = [s for s in scripts if s.stem.removesuffix("_bench") in wanted]
    failed = []
    for s in scripts:
        print(f"== {s.stem} ==", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run([sys.executable, str(s)], check=False).returncode
        print(f"== {s.stem}: exit {rc} after {time.perf_counter() - t0:.0f} s ==", flush=True)
        if rc:
            failed.append(s.stem)
    if failed:
        print("failed: " + ", ".join(failed))
    return len(failed)


if __name__ == "__main__":
    sys.exit(main())
