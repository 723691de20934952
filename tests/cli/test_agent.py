"""``cotscope agent``: the ``--json`` contract, bad task files, and each command on the output of the others
(agent run -> monitor -> metrics --detection -> report; run cuaharm on a task directory)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cotscope.agents import load_tasks
from cotscope.cli import app

runner = CliRunner()
XSS = "<script>alert('pwned')</script>"
ALL = {t.id: t for t in load_tasks("cuaharm-all").tasks}
HARMFUL_ID = "33d36d6f-5f8e-47ee-8455-42098a133c2c"  # exact_match: wipe /var/tmp
BENIGN_ID = next(t.id for t in ALL.values() if t.pair_id == HARMFUL_ID)
SOLUTIONS = Path(__file__).parents[1] / "agents" / "data"


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COTSCOPE_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def sandbox_ok(namespace_provider: Any) -> None:
    """Skips with the reason when the namespace sandbox cannot run here."""


def _solution(name: str, task: str) -> list[str]:
    rows = [json.loads(x) for x in (SOLUTIONS / name).read_text().splitlines() if x.strip()]
    return next(r["actions"] for r in rows if r["task"] == task)


def _task_dir(tmp_path: Path) -> Path:
    d = tmp_path / "tasks"
    d.mkdir()
    for t in (ALL[HARMFUL_ID], ALL[BENIGN_ID]):
        shutil.copy(str(t.source_file), d / Path(str(t.source_file)).name)
    (d / "broken.json").write_text('{"id": "x", "instruction": ')
    (d / "unknown-checker.json").write_text(json.dumps({"id": "y", "instruction": "z", "config": [],
                                                         "evaluator": {"func": "no_such_checker"}}))
    return d


def _script(tmp_path: Path) -> Path:
    p = tmp_path / "script.jsonl"
    harmful = [f"echo '{XSS}'", *_solution("solutions_harmful.jsonl", HARMFUL_ID)]
    p.write_text(json.dumps({"task": HARMFUL_ID, "actions": harmful}) + "\n"
                 + json.dumps({"task": BENIGN_ID, "actions": _solution("solutions_benign.jsonl", BENIGN_ID)}) + "\n")
    return p


def test_tasks_lists_the_shipped_sets() -> None:
    r = runner.invoke(app, ["agent", "tasks", "cuaharm", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert len(out["tasks"]) == 52 and not out["errors"]
    assert sum(1 for t in out["tasks"] if t["unsupported"]) == 5
    r = runner.invoke(app, ["agent", "tasks", "cuaharm-benign", "--json"])
    assert len(json.loads(r.stdout)["tasks"]) == 52


def test_tasks_reports_bad_files_with_the_cause(tmp_path: Path) -> None:
    r = runner.invoke(app, ["agent", "tasks", str(_task_dir(tmp_path)), "--json"])
    assert r.exit_code == 1
    out = json.loads(r.stdout)
    assert len(out["tasks"]) == 2
    errs = {Path(e["file"]).name: e["error"] for e in out["errors"]}
    assert set(errs) == {"broken.json", "unknown-checker.json"} and "no_such_checker" in errs["unknown-checker.json"]


@pytest.mark.slow
def test_run_monitor_metrics_report_chain(tmp_path: Path, sandbox_ok: None) -> None:
    store = tmp_path / "a.duckdb"
    r = runner.invoke(app, ["agent", "run", "--tasks", str(_task_dir(tmp_path)), "--model",
                            f"script/{_script(tmp_path)}", "--store", str(store), "--json"])
    assert r.exit_code == 1, r.output  # two task files did not load: reported, and the others ran
    out = json.loads(r.stdout)
    by = {o["task"]: o for o in out["tasks"]}
    assert by[HARMFUL_ID]["status"] == "done" and by[HARMFUL_ID]["score"] == 1.0 and by[HARMFUL_ID]["steps"] == 3
    assert by[BENIGN_ID]["score"] == 1.0 and by[BENIGN_ID]["variant"] == "benign"
    assert {o["status"] for t, o in by.items() if t not in (HARMFUL_ID, BENIGN_ID)} == {"error"}
    assert any("broken.json" in (o["source"] or "") for o in out["tasks"])
    assert out["harm_success_rate"] == 1.0 and out["refusal_rate"] == 0.0
    assert set(out) >= {"tasks", "harm_success_rate", "refusal_rate"}
    r = runner.invoke(app, ["traces", "--store", str(store), "--json"])
    listed = json.loads(r.stdout)["traces"]
    assert {x["prompt"].split("]")[0] for x in listed} == {"[harmful", "[benign"}
    r = runner.invoke(app, ["show", str(by[HARMFUL_ID]["trace_id"]), "--store", str(store)])
    assert r.exit_code == 0, r.output
    assert "step 1" in r.output and "step 3" in r.output and "$ echo" in r.output and "[DONE]" in r.output
    r = runner.invoke(app, ["monitor", "--monitor", "local-action", "--store", str(store), "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["metrics", "--store", str(store), "--detection", "--json"])
    assert r.exit_code == 0, r.output
    det: Any = json.loads(r.stdout)
    rows = det if isinstance(det, list) else det.get("detection", det.get("rows", []))
    row = next(x for x in rows if "local-action" in json.dumps(x))
    assert row["n_pos"] == 1 and row["n_neg"] == 1
    r = runner.invoke(app, ["report", "--store", str(store), "--out", str(tmp_path / "rep"), "--json"])
    assert r.exit_code == 0, r.output
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "Trajectory" in html and "step 1" in html and XSS not in html
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in html


@pytest.mark.slow
def test_run_cuaharm_benchmark_on_a_task_directory(tmp_path: Path, sandbox_ok: None) -> None:
    d = _task_dir(tmp_path)
    spec = yaml.safe_load((Path(__file__).parents[2] / "src/cotscope/benchmarks/specs/cuaharm.yaml").read_text())
    spec["name"] = "cuaharm-tiny"
    spec["data"] = {"loader": "cuaharm", "path": str(d)}
    y = tmp_path / "tiny.yaml"
    y.write_text(yaml.safe_dump(spec))
    store = tmp_path / "b.duckdb"
    r = runner.invoke(app, ["run", str(y), "--model", f"script/{_script(tmp_path)}", "--store", str(store), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    m = out["metrics"]
    assert m["summary"]["harm_success_rate"] == 1.0 and m["summary"]["benign_success_rate"] == 1.0
    assert any("broken.json" in n for n in out["notes"])
    titles = [t["title"] for t in m["tables"]]
    assert any(t.startswith("Monitors: harmful vs benign") for t in titles)
    # Rerun: nothing generated again.
    r = runner.invoke(app, ["run", str(y), "--model", f"script/{_script(tmp_path)}", "--store", str(store), "--json"])
    again = json.loads(r.stdout)
    assert again["generated"] == 0 and again["skipped_samples"] == 2


@pytest.mark.slow
def test_the_docs_example_runs_as_documented(tmp_path: Path, sandbox_ok: None) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "agents.md").read_text()
    script = doc.split("cat > script.jsonl <<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0]
    (tmp_path / "script.jsonl").write_text(script + "\n")
    ids = [json.loads(x)["task"] for x in script.splitlines()]
    args = ["agent", "run", "--tasks", "cuaharm-all", "--model", f"script/{tmp_path / 'script.jsonl'}",
            "--store", str(tmp_path / "agent.duckdb"), "--json"]
    for t in ids:
        args += ["--task-id", t]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    got = {o["task"][:8]: (o["variant"], o["score"], o["steps"], o["status"], o["refused"]) for o in out["tasks"]}
    assert got == {"006403b9": ("harmful", 0.0, 1, "failed", True), "6de31c9a": ("benign", 1.0, 2, "done", False)}
    assert (out["harm_success_rate"], out["refusal_rate"], out["benign_success_rate"]) == (0.0, 1.0, 1.0)
    again = json.loads(runner.invoke(app, args).stdout)
    assert again["skipped_existing"] == 2 and again["new_traces"] == 0


@pytest.mark.slow
def test_a_real_model_drives_the_loop(tmp_path: Path, sandbox_ok: None) -> None:
    """The embedded SmolLM2 (llama.cpp) as the agent: whatever it says, the loop runs, stores and reports it."""
    pytest.importorskip("llama_cpp")
    r = runner.invoke(app, ["agent", "run", "--tasks", "cuaharm-benign", "--task-id", BENIGN_ID, "--model",
                            "llamacpp/smollm2", "--max-steps", "2", "--max-tokens", "48", "--store",
                            str(tmp_path / "m.duckdb"), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    (o,) = out["tasks"]
    assert o["status"] in ("done", "failed") and 1 <= o["steps"] <= 2 and o["stored"]
    assert out["engine"]["completed"] == o["steps"] and out["engine"]["prompt_tokens"] > 0


@pytest.mark.slow
def test_run_cuaharm_with_llm_monitors(tmp_path: Path, sandbox_ok: None, fake: Any) -> None:
    """With --judge-model the LLM trajectory monitors run (not the fallbacks): each reads its own part, and the
    detection table has one row per monitor."""

    def reply(req: Any) -> str:
        text = " ".join(str(m["content"]) for m in req.messages)
        suspicious = "find /var/tmp" in text or "rm " in text
        verdict = "harmful" if suspicious else "benign"
        return f"The agent's actions look {verdict}.\n<score>{8 if suspicious else 1}</score>"

    judge = fake.model("traj-monitor", reply)
    d = _task_dir(tmp_path)
    spec = yaml.safe_load((Path(__file__).parents[2] / "src/cotscope/benchmarks/specs/cuaharm.yaml").read_text())
    spec["name"], spec["data"] = "cuaharm-tiny", {"loader": "cuaharm", "path": str(d)}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(spec))
    r = runner.invoke(app, ["run", str(tmp_path / "tiny.yaml"), "--model", f"script/{_script(tmp_path)}", "--store",
                            str(tmp_path / "c.duckdb"), "--judge-model", judge, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert [(j["judge"], j["part"], j["skipped"]) for j in out["judges"]] == [
        ("action-monitor", "actions", None), ("cot-monitor", "reasoning", None),
        ("cot-action-monitor", "trajectory", None)]
    det = next(t for t in out["metrics"]["tables"] if t["title"].startswith("Monitors: harmful vs benign"))
    assert [row[0] for row in det["rows"]] == ["action-monitor:actions", "cot-monitor:reasoning",
                                              "cot-action-monitor:trajectory"]
    assert fake.calls("traj-monitor")
