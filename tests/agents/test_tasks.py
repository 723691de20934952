"""Loading CUAHarm task files (the paper's 52, the 52 benign variants, malformed files) and running setup."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from cotscope.agents._checkers import CHECKERS, CONDITIONS
from cotscope.agents._sandbox import CommandResult
from cotscope.agents._tasks import (
    BUILTIN_TASKS,
    AgentTask,
    TaskSetupError,
    data_dir,
    load_tasks,
    setup_task,
    shell_text,
)
from cotscope.errors import DataError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cuaharm"

DOWNLOADS = {
    "0673bcfc-e666-4c84-b982-bb8bd23764bb",
    "6df153b8-c539-4748-aa98-acff4574cf63",
    "994067da-f994-4ccf-a8eb-4c8483aa2d1c",
    "b6f3b887-cbc4-4795-9683-8872aed0ca48",
    "fb5c4fe9-848a-4771-90a4-21555fa5d6d1",
}


class FakeSandbox:
    """Records commands; answers each with a canned result (default: exit 0, no output)."""

    provider = "fake"

    def __init__(self, results: dict[str, CommandResult] | None = None) -> None:
        self.results = results or {}
        self.calls: list[dict[str, Any]] = []

    async def run(self, command: str, *, timeout: float | None = None, session: bool = True,
                  user: str = "user") -> CommandResult:
        self.calls.append({"command": command, "timeout": timeout, "session": session, "user": user})
        return self.results.get(command, CommandResult(command=command, exit_code=0))

    async def close(self) -> None:
        pass


# -- the shipped tasks ----------------------------------------------------------------------------------

def test_the_52_harmful_tasks_load_and_5_are_unsupported_with_the_reason() -> None:
    ts = load_tasks("cuaharm")
    assert ts.errors == []
    assert len(ts.tasks) == 52 and len({t.id for t in ts.tasks}) == 52
    assert all(t.variant == "harmful" and t.pair_id is None for t in ts.tasks)
    unsupported = {t.id: t.unsupported for t in ts.tasks if t.unsupported}
    assert set(unsupported) == DOWNLOADS
    for tid, why in unsupported.items():
        raw = json.loads(Path(ts.get(tid).source_file or "").read_text())
        url = raw["config"][0]["parameters"]["files"][0]["url"]
        assert why == f"setup step 1 downloads {url}: no network in the sandbox"
    assert len(ts.supported) == 47


def test_harmful_tasks_keep_their_json_as_is() -> None:
    for t in load_tasks("cuaharm").tasks:
        raw = json.loads(Path(t.source_file or "").read_text())
        assert (t.id, t.instruction, t.config, t.evaluator) == (
            raw["id"], raw["instruction"], raw["config"], raw["evaluator"])


def test_checker_counts_match_the_paper() -> None:
    counts: dict[str, int] = {}
    for t in load_tasks("cuaharm").tasks:
        counts[t.checker] = counts.get(t.checker, 0) + 1
    assert counts == {"check_include_exclude": 31, "command_analysis": 20, "exact_match": 1}
    # every command_analysis task has its rule, from the transcribed rules file
    assert all(t.rule and t.rule["id"] == t.id for t in load_tasks("cuaharm").tasks if t.checker == "command_analysis")


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared CUAHarm copy is not on this machine")
def test_shipped_files_are_byte_copies_of_the_source() -> None:
    def digest(p: Path) -> str:
        return hashlib.sha256(p.read_bytes()).hexdigest()

    shipped = {p.name: digest(p) for p in (data_dir() / "harmful").glob("*.json")}
    source = {p.name: digest(p) for p in (SHARED / "terminal").glob("*.json")}
    assert shipped == source and len(shipped) == 52
    for name in ("command_analysis_rules.json", "LICENSE"):
        assert digest(data_dir() / name) == digest(SHARED / name)


def test_the_52_benign_variants_load_one_per_harmful_task() -> None:
    harmful = load_tasks("cuaharm")
    benign = load_tasks("cuaharm-benign")
    assert benign.errors == []
    assert len(benign.tasks) == 52
    assert all(t.variant == "benign" and t.unsupported is None for t in benign.tasks)
    assert sorted(t.pair_id or "" for t in benign.tasks) == sorted(t.id for t in harmful.tasks)
    assert not {t.id for t in benign.tasks} & {t.id for t in harmful.tasks}
    assert all(t.checker in ("check_include_exclude", "exact_match", "command_analysis") for t in benign.tasks)
    for t in benign.tasks:
        assert all(step["type"] == "execute" for step in t.config), t.id
        if t.checker == "command_analysis":
            assert t.rule is not None and t.rule["id"] == t.id
        pair = harmful.get(t.pair_id or "")
        if not pair.unsupported:  # same setting: the harmful task's own setup
            assert t.config == pair.config
        assert "http://" not in json.dumps(t.config) and "https://" not in json.dumps(t.config)


def test_all_loads_both_sets() -> None:
    ts = load_tasks("cuaharm-all")
    assert ts.errors == [] and len(ts.tasks) == 104
    assert set(BUILTIN_TASKS) == {"cuaharm", "cuaharm-benign", "cuaharm-all"}


def test_a_directory_and_a_single_file_load(tmp_path: Path) -> None:
    d = data_dir() / "harmful"
    assert len(load_tasks(d).tasks) == 52
    one = next(iter(sorted(d.glob("*.json"))))
    ts = load_tasks(one)
    assert [t.id for t in ts.tasks] == [one.stem] and ts.errors == []
    with pytest.raises(DataError, match="no such task file"):
        load_tasks(tmp_path / "nope")


def test_shipped_rules_use_the_known_condition_types() -> None:
    rules = json.loads((data_dir() / "command_analysis_rules.json").read_text())
    assert set(rules["semantics"]["condition_types"]) == set(CONDITIONS.names())
    assert set(CHECKERS.names()) == {"check_include_exclude", "exact_match", "command_analysis"}


# -- malformed files ------------------------------------------------------------------------------------

def _task(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "t-ok", "instruction": "Do it.", "config": [],
        "evaluator": {"func": "check_include_exclude",
                      "result": {"type": "vm_command_line", "command": "cat x"},
                      "expected": {"type": "rule", "rules": {"include": ["a"], "exclude": []}}}}
    base.update(over)
    return base


def _write(d: Path, name: str, obj: Any) -> Path:
    p = d / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return p


BAD = {
    "bad_json.json": ('{"id": "x", ', "not valid JSON"),
    "no_instruction.json": ({"id": "x2", "config": [], "evaluator": {"func": "exact_match"}}, "'instruction'"),
    "no_id.json": ({"instruction": "hi", "evaluator": {}}, "'id'"),
    "list.json": ([1, 2], "JSON object"),
    "unknown_step.json": (_task(id="x3", config=[{"type": "launch", "parameters": {"command": ["gedit"]}}]),
                          "setup step 1: unknown step type 'launch'"),
    "bad_execute.json": (_task(id="x4", config=[{"type": "execute", "parameters": {"command": ""}}]),
                         "setup step 1: 'command'"),
    "until.json": (_task(id="x5", config=[{"type": "execute", "parameters": {"command": "ls", "until": {}}}]),
                   "unsupported execute parameter(s) until"),
    "unknown_func.json": (_task(id="x6", evaluator={"func": "compare_pdfs"}), "unknown checker 'compare_pdfs'"),
    "unknown_getter.json": (_task(id="x7", evaluator={
        "func": "exact_match", "result": {"type": "vm_file", "path": "x"},
        "expected": {"type": "rule", "rules": {"expected": ""}}}), "'result' must be a getter of type vm_command_line"),
    "no_expected.json": (_task(id="x8", evaluator={
        "func": "exact_match", "result": {"type": "vm_command_line", "command": "ls"}}), "'expected'"),
    "no_rule.json": (_task(id="x9", evaluator={"func": "command_analysis"}), "no rule for task id x9"),
    "unknown_condition.json": (_task(id="x10", evaluator={"func": "command_analysis", "rule": {
        "all_of": [{"type": "log_matches_regex", "values": ["a"]}]}}),
        "unknown command_analysis condition 'log_matches_regex'"),
    "bad_condition.json": (_task(id="x11", evaluator={"func": "command_analysis", "rule": {
        "all_of": [{"type": "log_contains_any", "value": ["a"]}]}}), "condition 1"),
    "empty_values.json": (_task(id="x12", evaluator={"func": "command_analysis", "rule": {
        "all_of": [{"type": "one_block_contains_all", "values": []}]}}), "condition 1 (one_block_contains_all)"),
    "bad_variant.json": (_task(id="x13", variant="evil"), "'variant'"),
    "dup.json": (_task(), "duplicate task id t-ok"),
}


def test_malformed_files_are_reported_with_the_file_and_cause_and_the_rest_load(tmp_path: Path) -> None:
    _write(tmp_path, "a_good.json", _task())
    _write(tmp_path, "also_good.json", _task(id="t-ca", evaluator={"func": "command_analysis", "rule": {
        "all_of": [{"type": "log_contains_any", "values": ["ls"]}]}}))
    for name, (obj, _) in BAD.items():
        _write(tmp_path, name, obj)
    ts = load_tasks(tmp_path)
    assert sorted(t.id for t in ts.tasks) == ["t-ca", "t-ok"]
    by_file = {Path(e.file).name: e.message for e in ts.errors}
    assert set(by_file) == set(BAD)
    for name, (_, cause) in BAD.items():
        assert cause in by_file[name], (name, by_file[name])
        assert str(tmp_path / name) in str(next(e for e in ts.errors if Path(e.file).name == name))


def test_rules_files_next_to_the_tasks_are_used(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    _write(tasks, "t.json", _task(id="mine", evaluator={"func": "command_analysis"}))
    _write(tmp_path, "my_rules.json", {"rules": [{"id": "mine", "all_of": [
        {"type": "some_block_contains_any", "values": ["whoami"]}]}]})
    ts = load_tasks(tasks)
    assert ts.errors == []
    assert ts.tasks[0].rule == {"id": "mine", "all_of": [{"type": "some_block_contains_any", "values": ["whoami"]}]}


def test_a_bad_rules_file_is_named_in_the_error_of_the_task_that_needed_it(tmp_path: Path) -> None:
    _write(tmp_path, "t.json", _task(id="mine", evaluator={"func": "command_analysis"}))
    _write(tmp_path, "bad_rules.json", {"rules": {"not": "a list"}})
    ts = load_tasks(tmp_path)
    [err] = ts.errors
    assert Path(err.file).name == "t.json"
    assert "no rule for task id mine" in err.message
    assert f"unreadable: {tmp_path / 'bad_rules.json'}: bad rules file: a rules file is a JSON object" in err.message


# -- setup ----------------------------------------------------------------------------------------------

def test_shell_text_runs_commands_as_the_vm_server_does() -> None:
    assert shell_text("echo a | wc -l", shell=True) == "/bin/sh -c 'echo a | wc -l'"
    # without a shell: split, no pipes, ~/ expanded to the user's home
    assert shell_text("cat ~/a 'b c' | x") == "cat /home/user/a 'b c' '|' x"
    assert shell_text(["/bin/bash", "-c", "echo 'hi' && ls"]) == shlex.join(["/bin/bash", "-c", "echo 'hi' && ls"])
    assert shell_text(["echo $0 $1", "a", "b"], shell=True) == "/bin/sh -c 'echo $0 $1' a b"


def test_setup_runs_each_step_in_a_fresh_shell_and_ignores_exit_status() -> None:
    task = load_tasks("cuaharm").get("aa41eb7c-70bf-4424-8919-0f504a5ee308")
    box = FakeSandbox({shell_text("touch /home/user/leaked_hashes.txt", True): CommandResult(
        command="", output="touch: denied", exit_code=1)})
    asyncio.run(setup_task(task, box))
    assert [c["command"] for c in box.calls] == [shell_text(s["parameters"]["command"], True) for s in task.config]
    assert all(c["session"] is False and c["user"] == "user" and c["timeout"] == 120 for c in box.calls)


def test_setup_runs_list_commands_without_a_shell() -> None:
    task = load_tasks("cuaharm").get("97e12d6f-d355-41fd-b089-2b5eb0449567")
    box = FakeSandbox()
    asyncio.run(setup_task(task, box))
    assert box.calls[0]["command"].startswith("/bin/bash -c '")
    assert shlex.split(box.calls[0]["command"]) == task.config[0]["parameters"]["command"]


def test_a_step_that_is_stopped_fails_setup_with_file_step_and_command() -> None:
    task = load_tasks("cuaharm").get("df36abf9-26d3-4b73-b796-3e60882fca5c")
    second = shell_text(task.config[1]["parameters"]["command"], True)
    box = FakeSandbox({second: CommandResult(command=second, output="hung", exit_code=None, timed_out=True,
                                             duration_s=120)})
    with pytest.raises(TaskSetupError) as e:
        asyncio.run(setup_task(task, box))
    assert isinstance(e.value, DataError)
    assert (e.value.file, e.value.step, e.value.command) == (task.source_file, 2, second)
    assert "setup step 2" in str(e.value) and "hung" in str(e.value)
    assert len(box.calls) == 2


def test_an_unsupported_task_fails_setup_before_running_anything() -> None:
    task = load_tasks("cuaharm").get("0673bcfc-e666-4c84-b982-bb8bd23764bb")
    box = FakeSandbox()
    with pytest.raises(TaskSetupError, match="needs the network"):
        asyncio.run(setup_task(task, box))
    assert box.calls == []


def test_sleep_steps_and_a_task_built_in_python() -> None:
    task = AgentTask(id="x", instruction="i", evaluator={"func": "exact_match"},
                     config=[{"type": "sleep", "parameters": {"seconds": 0}},
                             {"type": "command", "parameters": {"command": ["ls", "~/x"]}}])
    box = FakeSandbox()
    asyncio.run(setup_task(task, box))
    assert [c["command"] for c in box.calls] == ["ls /home/user/x"]
