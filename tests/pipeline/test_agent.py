"""The agent stage end to end in real ``namespace`` sandboxes with the scripted model: scores as defined for every
checker type, harmful and benign, refusals, resume without duplicates, and a killed run that leaves nothing
behind and resumes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cotscope.agents import AgentSettings, load_tasks
from cotscope.pipeline import run_agent
from cotscope.store import Store

DATA = Path(__file__).parents[1] / "agents" / "data"
ALL = {t.id: t for t in load_tasks("cuaharm-all").tasks}
HARMFUL = {json.loads(x)["task"]: json.loads(x)["actions"] for x in (DATA / "solutions_harmful.jsonl").read_text()
           .splitlines() if x.strip()}
BENIGN = {json.loads(x)["task"]: json.loads(x)["actions"] for x in (DATA / "solutions_benign.jsonl").read_text()
          .splitlines() if x.strip()}
# One harmful task per checker type, and the benign variants of the same tasks.
PICK = ["43741177-61ae-4e94-915a-6e8fe7827924", "33d36d6f-5f8e-47ee-8455-42098a133c2c",
        "1c0848b3-b641-42f8-b554-fbba3ac33ddb" if "1c0848b3-b641-42f8-b554-fbba3ac33ddb" in HARMFUL
        else "f751d0ce-3780-419e-879c-4f6b29fc0ba2"]
PAIRS = {t.pair_id: t.id for t in ALL.values() if t.variant == "benign"}


def _script(path: Path, solve: dict[str, list[str]], refuse: list[str]) -> Path:
    lines = [{"task": t, "actions": a} for t, a in solve.items()]
    lines += [{"task": t, "actions": [], "final": "FAIL", "text": "I can't help with that."} for t in refuse]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


@pytest.mark.slow
def test_scripted_runs_score_as_defined_and_rerun_resumes(tmp_path: Path, namespace_provider: Any) -> None:
    harmful = [ALL[t] for t in PICK]
    benign = [ALL[PAIRS[t]] for t in PICK]
    assert {t.checker for t in harmful} == {"check_include_exclude", "exact_match", "command_analysis"}
    solved = {t.id: HARMFUL[t.id] for t in harmful} | {t.id: BENIGN[t.id] for t in benign}
    model = f"script/{_script(tmp_path / 's.jsonl', solved, [])}"
    refuser = f"script/{_script(tmp_path / 'r.jsonl', {}, [t.id for t in harmful + benign])}"
    store = Store(tmp_path / "a.duckdb")
    st = asyncio.run(run_agent(store, harmful + benign, model=model, sandbox=namespace_provider, concurrency=3))
    by = {o.task: o for o in st.outcomes}
    assert all(by[t.id].score == 1.0 and by[t.id].status == "done" for t in harmful + benign), st.to_dict()
    assert st.harm_success_rate == 1.0 and st.refusal_rate == 0.0 and st.benign_success_rate == 1.0
    ref = asyncio.run(run_agent(store, harmful + benign, model=refuser, sandbox=namespace_provider, concurrency=3))
    assert all(o.score == 0.0 and o.refused and o.status == "failed" for o in ref.outcomes)
    assert ref.harm_success_rate == 0.0 and ref.refusal_rate == 1.0 and ref.benign_refusal_rate == 1.0
    # The stored trajectory: reasoning and actions apart, one step span per agent step.
    t = next(x for x in store.traces() if x.metadata["agent"]["task_id"] == harmful[0].id and x.model == model)
    assert [a.kind for a in t.actions] == ["shell", "control"] and t.actions[0].step == 0
    assert t.actions[0].arguments["command"] == HARMFUL[harmful[0].id][0]
    assert (t.actions[0].model_extra or {})["exit_code"] == 0 and len(t.steps) == 2
    assert t.metadata["agent"]["responses"][-1] == "```DONE```"
    # The agent's reasoning is the model's own text: one raw span over all of it.
    assert [(p.kind, p.start, p.end) for p in t.reasoning_provenance] == [("raw", 0, len(t.reasoning))]
    # Rerun: everything is stored, nothing runs again, the outcomes are reported from the store.
    again = asyncio.run(run_agent(store, harmful + benign, model=model, sandbox=namespace_provider))
    assert again.skipped_existing == 6 and again.new_traces == 0
    assert [(o.task, o.score) for o in again.outcomes] == [(o.task, o.score) for o in st.outcomes]
    assert store.count() == 12
    store.close()


@pytest.mark.slow
def test_unsupported_tasks_are_reported_not_run(tmp_path: Path, namespace_provider: Any) -> None:
    unsupported = [t for t in ALL.values() if t.unsupported]
    assert len(unsupported) == 5
    store = Store(tmp_path / "a.duckdb")
    st = asyncio.run(run_agent(store, unsupported[:2], model=f"script/{_script(tmp_path / 's.jsonl', {}, [])}",
                               sandbox=namespace_provider))
    assert [o.status for o in st.outcomes] == ["unsupported"] * 2
    assert all("network" in o.reason for o in st.outcomes) and store.count() == 0
    store.close()


def _sleepers() -> list[str]:
    return subprocess.run(["pgrep", "-f", "sleep 4242"], capture_output=True, text=True).stdout.split()


def _cgroup_dirs(pid: str) -> list[Path]:
    """The cgroup directories (v1 hierarchies) of a process that belong to cotscope episodes."""
    out = []
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrl, path = line.split(":", 2)
        if "/cotscope/" in path and ctrl:
            out.append(Path("/sys/fs/cgroup") / ctrl.split(",")[0] / path.lstrip("/"))
    return out


@pytest.mark.slow
def test_a_killed_run_leaves_nothing_behind_and_resumes(tmp_path: Path, namespace_provider: Any) -> None:
    mounts_before = Path("/proc/self/mountinfo").read_text()
    fast, slow = ALL[PICK[0]], ALL[PICK[1]]
    script = _script(tmp_path / "s.jsonl", {fast.id: HARMFUL[fast.id], slow.id: ["sleep 4242"]}, [])
    cmd = [sys.executable, "-c", "from cotscope.cli import main; main()", "agent", "run", "--tasks", "cuaharm",
           "--task-id", fast.id, "--task-id", slow.id, "--model", f"script/{script}",
           "--store", str(tmp_path / "a.duckdb"), "--concurrency", "1", "--json", "--command-timeout", "6"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 60
    while not _sleepers() and time.time() < deadline:
        time.sleep(0.2)
    pids = _sleepers()
    assert pids, "the slow episode never started"
    groups = _cgroup_dirs(pids[0])
    assert groups, "the episode runs in no cotscope cgroup"
    proc.send_signal(signal.SIGKILL)  # the run dies mid-episode, without any chance to clean up
    proc.wait()
    deadline = time.time() + 10
    while _sleepers() and time.time() < deadline:
        time.sleep(0.2)
    assert not _sleepers()  # the pid namespace died with its parent: no process of the episode is left
    assert Path("/proc/self/mountinfo").read_text() == mounts_before  # its mounts were never the host's
    # A SIGKILLed parent cannot rmdir its cgroups: they are left empty, and swept by a later provider start.
    for g in groups:
        assert not g.exists() or (g / "cgroup.procs").read_text().strip() == ""
    # The rerun stores what was missing, once.
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    out = json.loads(done.stdout)
    assert {o["task"]: o["status"] for o in out["tasks"]} == {fast.id: "done", slow.id: "done"}
    store = Store(tmp_path / "a.duckdb", read_only=True)
    ids = [t.metadata["agent"]["task_id"] for t in store.traces()]
    assert sorted(ids) == sorted([fast.id, slow.id])
    store.close()
    # A provider's start sweeps empty episode groups older than a minute (younger ones may belong to an episode
    # being started); the same sweep without the age guard removes the killed run's groups now.
    from cotscope.agents._namespace import _detect_cgroups

    layout = _detect_cgroups()
    assert not isinstance(layout, str), layout
    layout.sweep(min_age_s=0)
    assert not any(g.exists() for g in groups)


def test_the_sandbox_unavailable_is_an_error_per_episode(tmp_path: Path) -> None:
    class Nope:
        name = "nope"

        def available(self) -> str | None:
            return "no namespaces on this machine"

        def config(self) -> dict[str, Any]:
            return {}

    store = Store(tmp_path / "a.duckdb")
    st = asyncio.run(run_agent(store, [ALL[PICK[0]]], model=f"script/{_script(tmp_path / 's.jsonl', {}, [])}",
                               sandbox=Nope(), settings=AgentSettings()))  # type: ignore[arg-type]
    assert st.outcomes[0].status == "error" and "no namespaces" in st.outcomes[0].reason
    assert store.count() == 0
    store.close()
