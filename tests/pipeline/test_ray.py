"""The stages over a real local Ray cluster, inside a private network namespace (Ray binds the machine's address
otherwise): the same traces and results as the in-process path, a worker killed mid-run, a driver killed
mid-run and rerun. The scenarios run once, as one script (``ray_scenarios.py``), so the cluster starts once."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.network_ns]

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'cotscope[ray]'")


def _namespace_problem() -> str | None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare (util-linux) and ip (iproute2) for a private network namespace"
    p = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True, text=True)
    if p.returncode != 0:
        return f"unshare -n is not allowed here (root or user namespaces needed): {p.stderr.strip()[:200]}"
    return None


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    why = _namespace_problem()
    if why:
        pytest.skip(why)
    out = tmp_path_factory.mktemp("ray") / "scenarios.json"
    script = Path(__file__).with_name("ray_scenarios.py")
    p = subprocess.run(["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$1" "$2"', sys.executable,
                        str(script), str(out)], capture_output=True, text=True, timeout=400)
    assert out.exists(), f"the scenarios wrote nothing (rc {p.returncode}):\n{p.stderr[-4000:]}"
    res: dict[str, Any] = json.loads(out.read_text())
    res["_stderr"] = p.stderr[-4000:]
    return res


def _section(res: dict[str, Any], name: str) -> dict[str, Any]:
    err = res.get("errors", {}).get(name)
    assert err is None, f"scenario {name} failed:\n{err}"
    assert name in res, f"scenario {name} did not run:\n{res['_stderr']}"
    section: dict[str, Any] = res[name]
    return section


def test_generate_over_three_workers_equals_the_in_process_path(scenarios: dict[str, Any]) -> None:
    g = _section(scenarios, "generate")
    assert g["same"], g
    assert g["ray"] == g["local"] == {"rows": 48, "ids": 48, "pairs": 48}
    st = g["stats"]
    assert (st["generated"], st["new_traces"], st["errors"]) == (48, 48, 0)
    assert st["executor"]["name"] == "ray" and st["executor"]["workers"] == 3 and st["executor"]["retried"] == 0
    assert g["rerun_requested"] == 0


def test_judge_and_embedded_monitor_over_workers_equal_the_in_process_path(scenarios: dict[str, Any]) -> None:
    j = _section(scenarios, "judge")
    assert j["same"] and j["n"] == 48, j
    assert (j["ray"]["stored"], j["ray"]["errors"]) == (48, 0) and j["ray"]["label_true"] == j["local"]["label_true"]
    assert j["ray"]["executor"]["workers"] == 3
    m = _section(scenarios, "monitor")
    assert m["same_keys_labels"] and m["max_score_diff"] < 1e-4, m
    assert m["ray"]["stored"] == m["local"]["stored"] == 12 and m["ray"]["errors"] == 0


def test_a_worker_killed_mid_run_loses_nothing_and_duplicates_nothing(scenarios: dict[str, Any]) -> None:
    k = _section(scenarios, "kill_worker")
    assert "pid" in k["killed"], k["killed"]
    ex = k["stats"]["executor"]
    assert ex["lost_workers"] == 1 and ex["retried"] >= 1, ex
    assert k["counts"] == {"rows": 60, "ids": 60, "pairs": 60}
    assert (k["stats"]["generated"], k["stats"]["new_traces"], k["stats"]["errors"]) == (60, 60, 0)
    assert k["same_as_local"]


def test_a_killed_driver_reruns_to_completion_without_duplicates(scenarios: dict[str, Any]) -> None:
    d = _section(scenarios, "kill_driver")
    first, rerun, final = d["first"], d["rerun"], d["final"]
    assert "rc" not in rerun, rerun
    assert 0 < first["pairs"] < d["expected"], d  # killed mid-run, with finished results stored
    assert first["pairs"] % 10 == 0, d  # each finished unit (5 groups of 2) was stored whole as it came back
    assert first["rows"] == first["pairs"]
    assert rerun["skipped_existing"] == first["pairs"]
    assert rerun["requested"] == d["expected"] - first["pairs"] == rerun["new_traces"]
    assert final == {"rows": d["expected"], "ids": d["expected"], "pairs": d["expected"]}
